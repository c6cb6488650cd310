// Symbolize: names the code behind the addresses a Tessera serial log gives for faults in
// servers (`tessera symbolize LOG`).
//
// Contract: `symbolize(log:resolve:)` returns the log with, after every line that reports
// a server stopped at an image offset ("server NAME stopped: ... (image offset 0xOFF)",
// or a panic backtrace's frame "#N 0xADDRESS server NAME + 0xOFF"),
// the frames at that offset, innermost first, each as "    at FUNCTION (FILE:LINE)"
// (inlined frames included; the first may be the Swift runtime's message, such as "Swift
// runtime failure: Index out of range"). Which server file NAME came from is read from the
// log's "loaded NAME from FILE.srv" lines. `resolve(file, offset)` does the lookup (the
// tool runs llvm-symbolizer on build/servers/FILE/server.debug.so and demangles with
// `swift demangle`); lines it cannot resolve are left as they are.

import Foundation

/// One frame at an address: a function (or the runtime's message) and where it is.
public struct SymbolizedFrame: Equatable, Sendable {
  /// The function (demangled), or the runtime's message for the trap.
  public var function: String
  /// FILE:LINE, or "<compiler-generated>:0".
  public var location: String

  /// A frame.
  public init(function: String, location: String) {
    self.function = function
    self.location = location
  }
}

/// The log with the frames behind each server fault's image offset inserted after it.
public func symbolize(log: String, resolve: (_ serverFile: String, _ offset: UInt32) -> [SymbolizedFrame])
  -> String
{
  var files: [String: String] = [:]  // server name -> file name without ".srv"
  var output: [String] = []
  // Serial logs end lines with "\r\n", which Swift takes for one character.
  let text = log.replacingOccurrences(of: "\r", with: "")
  for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
    output.append(String(line))
    if let loaded = line.firstMatch(of: /loaded (\w+) from (\w+)\.srv/) {
      files[String(loaded.1)] = String(loaded.2)
    }
    // A contained fault ("server NAME stopped: ... (image offset 0xOFF)"), or a frame of
    // a kernel panic's backtrace inside a kernel-mode server ("server NAME + 0xOFF").
    let match =
      line.firstMatch(of: /server (\w+) stopped:.*\(image offset 0x([0-9a-fA-F]+)\)/).map { ($0.1, $0.2) }
      ?? line.firstMatch(of: /#\d+ 0x[0-9a-fA-F]+ server (\w+) \+ 0x([0-9a-fA-F]+)/).map { ($0.1, $0.2) }
    guard let (nameText, offsetText) = match, let offset = UInt32(offsetText, radix: 16) else { continue }
    let name = String(nameText)
    for frame in resolve(files[name] ?? name, offset) {
      output.append("    at \(frame.function) (\(frame.location))")
    }
  }
  return output.joined(separator: "\n")
}

/// Frames from `llvm-symbolizer` output (pairs of lines: function, then FILE:LINE:COLUMN),
/// with the functions demangled by `demangle`, "??" frames dropped and columns cut.
public func parseSymbolizerOutput(_ text: String, demangle: (String) -> String) -> [SymbolizedFrame] {
  let lines = text.split(separator: "\n").map(String.init)
  var frames: [SymbolizedFrame] = []
  var index = 0
  while index + 1 < lines.count {
    let function = lines[index]
    var location = lines[index + 1]
    index += 2
    guard function != "??" else { continue }
    // FILE:LINE:COLUMN -> FILE:LINE
    if let lastColon = location.lastIndex(of: ":"),
      location[location.index(after: lastColon)...].allSatisfy(\.isNumber)
    {
      location = String(location[..<lastColon])
    }
    frames.append(SymbolizedFrame(function: demangle(function), location: location))
  }
  return frames
}

/// `symbolize(log:resolve:)` with the frames read from `DIRECTORY/FILE/server.debug.so` by
/// llvm-symbolizer and demangled by `swift demangle`; paths under the current directory
/// are given relative to it.
public func symbolize(log: String, serverDirectory: String) -> String {
  let here = FileManager.default.currentDirectoryPath + "/"
  return symbolize(log: log) { file, offset in
    let debugFile = "\(serverDirectory)/\(file)/server.debug.so"
    guard FileManager.default.fileExists(atPath: debugFile) else { return [] }
    let output = runTool(
      [
        "llvm-symbolizer", "--obj=\(debugFile)", "--inlines", "--no-demangle",
        "0x\(String(offset, radix: 16))",
      ])
    return parseSymbolizerOutput(output) { demangle($0) }.map { frame in
      var frame = frame
      if frame.location.hasPrefix(here) { frame.location.removeFirst(here.count) }
      if frame.location.hasPrefix("/<") { frame.location.removeFirst() }
      return frame
    }
  }
}

/// Runs `command` (looked up on PATH) with `input` on its standard input; its standard
/// output ("" if it cannot run).
func runTool(_ command: [String], input: String? = nil) -> String {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
  process.arguments = command
  let output = Pipe()
  process.standardOutput = output
  process.standardError = FileHandle.nullDevice
  let inputPipe = Pipe()
  if input != nil { process.standardInput = inputPipe }
  guard (try? process.run()) != nil else { return "" }
  if let input {
    inputPipe.fileHandleForWriting.write(Data(input.utf8))
    try? inputPipe.fileHandleForWriting.close()
  }
  let data = output.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return String(decoding: data, as: UTF8.self)
}

/// A Swift symbol demangled by `swift demangle --simplified` (unchanged if it is not one).
func demangle(_ name: String) -> String {
  guard name.hasPrefix("$") else { return name }
  let text = runTool(["swift", "demangle", "--simplified", "--compact"], input: name + "\n")
    .trimmingCharacters(in: .whitespacesAndNewlines)
  return text.isEmpty ? name : text
}
