// tessera: the host-side tool for Tessera images.
//
// Contract: every subcommand reads its inputs, prints its result on standard output,
// and on bad input prints `tessera: FILE: reason` on standard error and exits with
// status 1 (2 for a usage error). See `usage` for the subcommands.

import Foundation
import KernelCore
import TesseraTools

/// Ends the tool with a message on standard error.
func fail(_ message: String, status: Int32 = 1) -> Never {
  FileHandle.standardError.write(Data("tessera: \(message)\n".utf8))
  exit(status)
}

/// The tool's version (the kernel's, see Kernel/Core/Version).
let version = "tessera 0.1.0"

/// A subcommand: its arguments, what it does, and how many arguments it takes.
struct Command {
  var name: String
  var arguments: String
  var summary: String
  var minimum: Int
  var maximum: Int
  /// The argument names, for "missing ..." messages.
  var names: [String]

  var usageLine: String { "tessera \(name) \(arguments)" }
}

let commands: [Command] = [
  Command(
    name: "check", arguments: "SYSTEM.system [SERVER-DIR...]",
    summary: """
      check a composition without booting: server files valid, every slot bound to a
      structurally matching interface, run targets provide Program (server files are
      looked up in build/servers and build/test-modules by default)
      """, minimum: 1, maximum: Int.max, names: ["SYSTEM.system"]),
  Command(
    name: "graph", arguments: "SYSTEM.system [OUTPUT.dot]",
    summary: """
      write the composition as a Graphviz graph: instances (kernel mode, user mode, shared
      spaces), bindings between them and the kernel services they use; with OUTPUT.dot,
      also OUTPUT.svg when Graphviz's `dot` is installed
      """, minimum: 1, maximum: 2, names: ["SYSTEM.system"]),
  Command(
    name: "inspect", arguments: "SERVER.srv...",
    summary: "print a server file's manifest, interfaces with signatures, sizes and imports",
    minimum: 1, maximum: Int.max, names: ["SERVER.srv"]),
  Command(
    name: "symbolize", arguments: "LOG [SERVER-DIR]",
    summary: """
      print a serial log with the function, file and line behind every server fault's
      image offset (from SERVER-DIR/NAME/server.debug.so, build/servers by default; needs
      llvm-symbolizer)
      """, minimum: 1, maximum: 2, names: ["LOG"]),
  Command(
    name: "symbols", arguments: "KERNEL.elf",
    summary: """
      print the function symbols of KERNEL.elf as a symbol map, sorted by address (pipe
      through `swift demangle --simplified` for readable names)
      """, minimum: 1, maximum: 1, names: ["KERNEL.elf"]),
  Command(
    name: "generate", arguments: "SERVER.server INTERFACES-DIR OUTPUT.swift MANIFEST.bin",
    summary: "generate a server's proxies, dispatch functions and binary manifest (the build runs it)",
    minimum: 4, maximum: 4, names: ["SERVER.server", "INTERFACES-DIR", "OUTPUT.swift", "MANIFEST.bin"]),
  Command(
    name: "generate-kernel", arguments: "INTERFACES-DIR OUTPUT.swift",
    summary:
      "generate the kernel's dispatch functions and proxies for the interfaces of KernelServiceCatalog\n(the build runs it)",
    minimum: 2, maximum: 2, names: ["INTERFACES-DIR", "OUTPUT.swift"]),
  Command(
    name: "abi-header", arguments: "OUTPUT.h",
    summary: "write the kernel ABI's constants for assembly and C (the build runs it)",
    minimum: 1, maximum: 1, names: ["OUTPUT.h"]),
  Command(
    name: "bench-report", arguments: "CONSOLE.log RESULTS.json",
    summary: "turn the @@BENCH lines of a benchmark run into a table and a JSON file (make bench runs it)",
    minimum: 2, maximum: 2, names: ["CONSOLE.log", "RESULTS.json"]),
]

/// Every subcommand's usage, for `tessera help`.
let usage =
  "usage:\n"
  + commands.map { command in
    "  \(command.usageLine)\n"
      + command.summary.split(separator: "\n").map { "      \($0)" }.joined(separator: "\n")
  }.joined(separator: "\n")
  + "\n  tessera help | --help, tessera COMMAND --help, tessera --version"

/// One subcommand's usage, for `tessera COMMAND --help`.
func usage(of command: Command) -> String {
  "usage: \(command.usageLine)\n"
    + command.summary.split(separator: "\n").map { "  \($0)" }.joined(separator: "\n")
}

/// Prints the symbol map of the ELF file at `path`.
func printSymbols(path: String) {
  let data: Data
  do { data = try readData(path) } catch { fail("\(error)") }
  data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
    do throws(ELFError) {
      let file = try ELF32File(bytes: bytes)
      guard let table = try file.symbolTable() else { fail("\(path): has no symbol table") }
      var entries: [(address: UInt32, size: UInt32, name: UnsafeBufferPointer<UInt8>)] = []
      for symbol in table where symbol.isDefined && symbol.type == ELF32Symbol.typeFunction {
        entries.append((symbol.value, symbol.size, try table.name(of: symbol)))
      }
      entries.sort { $0.address < $1.address }
      var output = ""
      for entry in entries {
        output += SymbolMap.line(address: entry.address, size: entry.size, name: entry.name).string
        output += "\n"
      }
      FileHandle.standardOutput.write(Data(output.utf8))
    } catch {
      fail("\(path): \(error.message.string)")
    }
  }
}

/// Writes OUTPUT.d next to `next` (its extension replaced): a make rule saying `targets`
/// depend on `sources`, and an empty rule per source, so a deleted interface file makes
/// its users rebuild instead of stopping make.
func writeDependencies(targets: [String], sources: [String], next: String) throws {
  let path = (next as NSString).deletingPathExtension + ".d"
  var text = targets.joined(separator: " ") + ": " + sources.joined(separator: " ") + "\n"
  for source in sources { text += "\(source):\n" }
  try writeFile(path, Data(text.utf8))
}

/// Runs `body`, turning declaration errors into `tessera: reason` and status 1.
func reportingErrors(_ body: () throws -> Void) {
  do { try body() } catch { fail("\(error)") }
}

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case nil, "help", "--help", "-h":
  print(usage)
  exit(arguments.isEmpty ? 2 : 0)
case "--version", "version":
  print(version)
  exit(0)
default:
  break
}
guard let command = commands.first(where: { $0.name == arguments[0] }) else {
  fail(
    "unknown command \(arguments[0]) (the commands: \(commands.map(\.name).joined(separator: ", ")))",
    status: 2)
}
if arguments.dropFirst().contains(where: { $0 == "--help" || $0 == "-h" }) {
  print(usage(of: command))
  exit(0)
}
let given = arguments.count - 1
if given < command.minimum {
  let missing = command.names[min(given, command.names.count - 1)]
  fail("\(command.name): missing \(missing)\n\(usage(of: command))", status: 2)
}
if given > command.maximum {
  fail(
    "\(command.name): too many arguments (\(given); at most \(command.maximum))\n\(usage(of: command))",
    status: 2)
}

switch command.name {
case "symbols":
  printSymbols(path: arguments[1])
case "generate":
  reportingErrors {
    let server = try parseServer(try readText(arguments[1]), file: arguments[1])
    // Its name names its symbols, its debug file and its boot module: it must be the
    // file's (and so the folder's), or a copied server would shadow its original.
    let fileName = ((arguments[1] as NSString).lastPathComponent as NSString).deletingPathExtension
    guard server.name == fileName else {
      throw LanguageError(
        file: arguments[1], line: 0,
        reason: "the server is called \(server.name); it must be called \(fileName), like its file and folder"
      )
    }
    let catalog = try loadInterfaces(directory: arguments[2], server: arguments[1])
    try writeFile(arguments[3], Data(try serverSource(server, catalog: catalog).utf8))
    try writeFile(arguments[4], Data(try manifestBytes(server, catalog: catalog)))
    // For make: the outputs depend on the interface files this server uses, not on all.
    let used = Set(try catalog.interfaces(of: server).map(\.file)).sorted()
    try writeDependencies(targets: [arguments[3], arguments[4]], sources: used, next: arguments[3])
  }
case "generate-kernel":
  reportingErrors {
    let catalog = try loadInterfaces(directory: arguments[1])
    let names = KernelServiceCatalog.kernelInterfaces.map(\.description)
    try writeFile(arguments[2], Data(try kernelSource(names, catalog: catalog).utf8))
    let used = Set(try catalog.closure(of: names, file: "kernel").map(\.file)).sorted()
    try writeDependencies(targets: [arguments[2]], sources: used, next: arguments[2])
  }
case "abi-header":
  reportingErrors { try writeFile(arguments[1], Data(kernelABIHeader().utf8)) }
case "inspect":
  reportingErrors {
    for path in arguments.dropFirst() {
      let data = try readData(path)
      print(try data.withUnsafeBytes { try inspectServerFile($0, path: path) })
    }
  }
case "check":
  reportingErrors {
    let directories = arguments.count > 2 ? Array(arguments[2...]) : ["build/servers", "build/test-modules"]
    for directory in directories where !FileManager.default.fileExists(atPath: directory) {
      let hint = directory.hasPrefix("build/") ? " (build the server files first: make servers)" : ""
      fail("check: the server directory \(directory) does not exist\(hint)")
    }
    let problems = try checkComposition(
      path: arguments[1], serverDirectories: directories,
      interfaces: try loadInterfaces(directory: "Interfaces"))
    if problems.isEmpty {
      print("\(arguments[1]): ok")
    } else {
      for problem in problems { FileHandle.standardError.write(Data("tessera: \(problem)\n".utf8)) }
      exit(1)
    }
  }
case "graph":
  reportingErrors {
    let dot = try compositionGraph(path: arguments[1], text: try readText(arguments[1]))
    guard arguments.count == 3 else {
      print(dot, terminator: "")
      return
    }
    try writeFile(arguments[2], Data(dot.utf8))
    print("wrote \(arguments[2])")
    let svg = (arguments[2] as NSString).deletingPathExtension + ".svg"
    if let dotTool = ["/usr/bin/dot", "/usr/local/bin/dot"].first(where: FileManager.default.isExecutableFile)
    {
      let process = Process()
      process.executableURL = URL(fileURLWithPath: dotTool)
      process.arguments = ["-Tsvg", arguments[2], "-o", svg]
      try process.run()
      process.waitUntilExit()
      guard process.terminationStatus == 0 else {
        throw LanguageError(file: svg, line: 0, reason: "dot failed (status \(process.terminationStatus))")
      }
      print("wrote \(svg)")
    } else {
      print("(Graphviz's dot is not installed: no SVG; apt-get install graphviz)")
    }
  }
case "bench-report":
  reportingErrors {
    let results = try benchmarkResults(fromConsole: try readText(arguments[1]), file: arguments[1])
    try checkExpectedFigures(results, file: arguments[1])
    let targets = try judgeTargets(results, file: arguments[1])
    print(benchmarkTable(results, targets: targets))
    try writeFile(arguments[2], Data(benchmarkJSON(results, targets: targets).utf8))
    print("wrote \(arguments[2])")
  }
case "symbolize":
  reportingErrors {
    let log = try readText(arguments[1])
    print(symbolize(log: log, serverDirectory: arguments.count == 3 ? arguments[2] : "build/servers"))
  }
default:
  fail("\(command.name): not implemented", status: 2)
}
