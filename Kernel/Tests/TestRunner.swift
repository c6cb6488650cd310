// TestRunner: runs the in-kernel tests of the test image and reports them on the console.
//
// Contract: the report is line-based and stable, for the host's system tests:
//   @@TEST-BEGIN name
//   @@TEST-CHECK name: what failed         (zero or more)
//   @@TEST-PASS name   or   @@TEST-FAIL name
//   @@TEST-SUMMARY passed=N failed=M
// then QEMU is ended through isa-debug-exit with ExitCode.success or .failure.
// `test=NAME` on the command line runs one test; without it every test that does not end
// in a panic runs. Tests that end in a panic (the `fault.*` tests) only run by name.

import KernelCore

/// One in-kernel test.
struct KernelTest {
  /// The test's name, `area.what`.
  var name: StaticString
  /// Whether the test ends the kernel with a deliberate panic.
  var endsInPanic = false
  /// The test body; it reports failures with `check`.
  var body: () -> Void
}

enum TestRun {
  nonisolated(unsafe) static var current: StaticString = ""
  nonisolated(unsafe) static var failures = 0
}

/// Records a failure of the running test when `condition` is false.
func check(_ condition: Bool, _ message: KernelMessage) {
  guard !condition else { return }
  TestRun.failures += 1
  KernelConsole.write("@@TEST-CHECK \(TestRun.current): \(message)\n")
}

func runSystem() -> Never {
  let selected = Boot.commandLine.value(of: "test")
  var passed = 0
  var failed = 0
  var ran = 0
  for test in allKernelTests() {
    if let selected {
      guard equals(selected, test.name) else { continue }
    } else if test.endsInPanic {
      continue
    }
    ran += 1
    TestRun.current = test.name
    TestRun.failures = 0
    KernelConsole.write("@@TEST-BEGIN \(test.name)\n")
    test.body()
    if TestRun.failures == 0 {
      passed += 1
      KernelConsole.write("@@TEST-PASS \(test.name)\n")
    } else {
      failed += 1
      KernelConsole.write("@@TEST-FAIL \(test.name)\n")
    }
  }
  if let selected, ran == 0 {
    KernelConsole.write("@@TEST-CHECK \(text: selected): no such test\n")
    failed += 1
  }
  KernelConsole.write("@@TEST-SUMMARY passed=\(passed) failed=\(failed)\n")
  Machine.stop(failed == 0 ? .success : .failure)
}
