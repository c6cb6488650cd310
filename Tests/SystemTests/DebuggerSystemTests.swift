// DebuggerSystemTests: `make gdb`'s script (tools/gdb/tessera.py) against a halted QEMU:
// a breakpoint on a line of a server that is loaded only at run time is hit, with the
// server's symbols added at its load address. Needs gdb (Debian's `gdb`); skipped, and
// says so, without it.

import Foundation
import Testing

private let gdbPath = ["/usr/bin/gdb", "/usr/local/bin/gdb"].first {
  FileManager.default.isExecutableFile(atPath: $0)
}

@Suite struct DebuggerSystemTests {
  @Test(.enabled(if: gdbPath != nil, "gdb is not installed (apt-get install gdb)"))
  func gdbBreaksOnALineOfAServerLoadedAtRunTime() throws {
    let root = QEMU.root.path
    // A port of its own, so parallel test runs do not meet.
    let port = 20_000 + Int(getpid() % 10_000)
    let qemu = Process()
    qemu.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    qemu.currentDirectoryURL = QEMU.root
    qemu.arguments = [
      "qemu-system-i386", "-m", "128M", "-display", "none", "-no-reboot", "-monitor", "none",
      "-serial", "null", "-gdb", "tcp:127.0.0.1:\(port)", "-S", "-kernel", "build/kernel.elf",
      "-initrd",
      (["build/kernel.map", "systems/tutorial.system"] + QEMU.serverModules).joined(separator: ","),
      "-append", "on-panic=exit",
    ]
    qemu.standardOutput = FileHandle.nullDevice
    qemu.standardError = FileHandle.nullDevice
    try qemu.run()
    defer {
      if qemu.isRunning { qemu.terminate() }
      qemu.waitUntilExit()
    }
    let commands = """
      source tools/gdb/tessera.py
      tessera-connect 127.0.0.1:\(port)
      break Greeter.swift:30
      continue
      bt 2
      kill

      """
    let script = FileManager.default.temporaryDirectory.appendingPathComponent("tessera-gdb-\(port).gdb")
    try commands.write(to: script, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(at: script) }
    Thread.sleep(forTimeInterval: 0.5)  // QEMU's stub listening

    let gdb = Process()
    gdb.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    gdb.currentDirectoryURL = QEMU.root
    gdb.arguments = ["timeout", "60", gdbPath!, "-batch", "-nx", "build/kernel.elf", "-x", script.path]
    let pipe = Pipe()
    gdb.standardOutput = pipe
    gdb.standardError = pipe
    try gdb.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    gdb.waitUntilExit()
    let log = "\(root)/build/test-logs/gdbBreaksOnALineOfAServerLoadedAtRunTime.log"
    try? output.write(toFile: log, atomically: true, encoding: .utf8)

    #expect(output.contains("tessera: Greeter loaded at 0x"), "\(output)")
    #expect(output.contains("symbols from build/servers/Greeter/server.debug.so"))
    #expect(output.contains("Breakpoint 1, "), "the breakpoint was not hit:\n\(output)")
    #expect(output.contains("at Servers/Greeter/Greeter.swift:30"))
    #expect(output.contains("greetings = empty[Int(greetings)]"), "gdb shows the source line")
    // No screen of warnings: the .debug_names index and the Clang-module breadcrumbs that
    // made them are gone from the build.
    #expect(!output.contains("warning:") && !output.contains("During symbol reading"), "\(output)")
  }
}
