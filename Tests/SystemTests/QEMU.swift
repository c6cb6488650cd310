// QEMU: boots a Tessera image in qemu-system-i386 for the system tests and collects what
// the guest printed on its serial console.
//
// Contract: `boot` returns when the guest ends itself (through isa-debug-exit), when
// `until` matches a console line (then the guest is killed: that is expected), or when
// `timeout` passes (the guest is killed and `timedOut` is set; the caller reports the
// test's name and the last output). Images come from build/, which `make test` fills
// before it runs `swift test`. Every boot's console is kept in build/test-logs/NAME.log,
// and failure messages built with `tail` name that file.

import Foundation

/// What one boot of a guest produced.
struct BootResult {
  /// QEMU's exit status; with isa-debug-exit it is `(code << 1) | 1`.
  var status: Int32
  /// Everything the guest wrote to the serial console, "\r" removed.
  var output: String
  /// Whether the guest was killed because it ran past the timeout.
  var timedOut: Bool
  /// Whether the guest was killed because `until` matched.
  var stoppedByMatch: Bool
  /// Where the whole console output was kept (relative to the repository).
  var logPath = ""

  var lines: [Substring] { output.split(separator: "\n") }

  /// The last `count` lines and the kept log's path, for failure messages.
  func tail(_ count: Int = 15) -> String {
    lines.suffix(count).joined(separator: "\n") + "\n(whole serial log: \(logPath))"
  }
}

/// Exit statuses of the kernel's `ExitCode` as QEMU reports them.
enum GuestStatus {
  static let success: Int32 = (0x10 << 1) | 1
  static let failure: Int32 = (0x11 << 1) | 1
  static let panic: Int32 = (0x12 << 1) | 1
}

enum QEMU {
  /// The repository's root, found from this file's location.
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

  struct MissingImage: Error, CustomStringConvertible {
    var path: String
    var description: String {
      "\(path) does not exist: run `make test`, which builds the kernel images before the tests"
    }
  }

  /// Every server file and deliberately broken test module the build made.
  static var serverModules: [String] {
    ["build/servers", "build/test-modules"].flatMap { folder in
      let path = root.appendingPathComponent(folder).path
      let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
      return names.filter { $0.hasSuffix(".srv") }.sorted().map { "\(folder)/\($0)" }
    }
  }

  /// Boots `build/IMAGE.elf` with its symbol map, the further boot `modules` (paths
  /// relative to the repository) and the kernel command line `append`.
  /// `input.text` is typed on the serial console once the output contains `input.after`
  /// (typing earlier would race with the kernel resetting the UART).
  /// `countInstructions` runs the guest under `-icount shift=0,sleep=off`: its clock then
  /// follows executed instructions, not the host, so timing inside the guest does not
  /// depend on how loaded the host is. The console is kept in `build/test-logs/LOG.log`
  /// (by default named after the image, the first module and the command line).
  /// `devices` are QEMU `-device` specifications added to the machine (`rtl8139`);
  /// `arguments` go to QEMU as they are (a `-netdev`).
  static func boot(
    image: String, modules: [String] = [], append: String = "", input: (after: String, text: String)? = nil,
    countInstructions: Bool = false, timeout: TimeInterval = 60, log: String? = nil,
    devices: [String] = [], arguments: [String] = [], until: ((Substring) -> Bool)? = nil
  ) throws -> BootResult {
    let kernel = root.appendingPathComponent("build/\(image).elf").path
    let moduleArgument = (["build/\(image).map"] + modules).map { root.appendingPathComponent($0).path }
    for path in [kernel] + moduleArgument where !FileManager.default.fileExists(atPath: path) {
      throw MissingImage(path: path)
    }
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments =
      [
        "qemu-system-i386", "-m", "128M", "-display", "none", "-no-reboot", "-monitor", "none",
        "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-kernel", kernel, "-initrd", moduleArgument.joined(separator: ","), "-append", append,
      ] + (countInstructions ? ["-icount", "shift=0,sleep=off"] : []) + devices.flatMap { ["-device", $0] }
      + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    let inputPipe = Pipe()
    process.standardInput = input == nil ? FileHandle.nullDevice : inputPipe

    let collector = OutputCollector(until: until)
    try process.run()
    // A dedicated thread reads the console with blocking reads until QEMU closes it.
    let reader = Thread {
      var typed = false  // only this thread touches it
      let handle = pipe.fileHandleForReading
      while true {
        let data = handle.availableData
        if data.isEmpty { break }
        if collector.append(data) { kill(process.processIdentifier, SIGKILL) }
        if let input, !typed, collector.text.contains(input.after) {
          typed = true
          inputPipe.fileHandleForWriting.write(Data(input.text.utf8))
        }
      }
      collector.finish()
    }
    reader.start()
    let deadline = Date().addingTimeInterval(timeout)
    var timedOut = false
    while process.isRunning {
      if Date() > deadline {
        timedOut = true
        kill(process.processIdentifier, SIGKILL)
        break
      }
      Thread.sleep(forTimeInterval: 0.02)
    }
    process.waitUntilExit()
    collector.waitForEnd()
    var result = BootResult(
      status: process.terminationStatus, output: collector.text, timedOut: timedOut,
      stoppedByMatch: collector.matched)
    result.logPath = keep(
      result.output, name: log ?? defaultLogName(image: image, modules: modules, append: append))
    return result
  }

  /// A log name from what was booted: "kernel-test-test=frames", "kernel-hostile".
  private static func defaultLogName(image: String, modules: [String], append: String) -> String {
    let first = modules.first.map { URL(fileURLWithPath: $0).deletingPathExtension().lastPathComponent }
    let options = append.split(separator: " ").filter { !$0.hasPrefix("on-panic") && $0 != "exit-when-idle" }
    return ([image] + (first.map { [$0] } ?? []) + options.map(String.init)).joined(separator: "-")
  }

  /// Writes `output` to build/test-logs/NAME.log; returns that path.
  private static func keep(_ output: String, name: String) -> String {
    let safe = String(
      name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "=" || $0 == "." ? $0 : "_" })
    let path = "build/test-logs/\(safe).log"
    let folder = root.appendingPathComponent("build/test-logs")
    try? FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    try? output.write(to: root.appendingPathComponent(path), atomically: true, encoding: .utf8)
    return path
  }
}

/// Accumulates console output from the reader thread.
private final class OutputCollector: @unchecked Sendable {
  private let lock = NSLock()
  private var data = Data()
  private var scannedLines = 0
  private let until: ((Substring) -> Bool)?
  private let ended = DispatchSemaphore(value: 0)
  private(set) var matched = false

  init(until: ((Substring) -> Bool)?) { self.until = until }

  /// Adds output; returns true when `until` has just matched a complete line.
  func append(_ more: Data) -> Bool {
    lock.lock()
    defer { lock.unlock() }
    data.append(more)
    guard let until, !matched else { return false }
    let lines = String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\r", with: "")
      .split(separator: "\n", omittingEmptySubsequences: false).dropLast()
    for line in lines.dropFirst(scannedLines) where until(line) {
      matched = true
      return true
    }
    scannedLines = lines.count
    return false
  }

  func finish() { ended.signal() }

  func waitForEnd() { _ = ended.wait(timeout: .now() + 10) }

  var text: String {
    lock.lock()
    defer { lock.unlock() }
    return String(decoding: data, as: UTF8.self).replacingOccurrences(of: "\r", with: "")
  }
}
