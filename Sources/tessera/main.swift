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

let usage = """
  usage:
    tessera symbols KERNEL.elf
        print the function symbols of KERNEL.elf as a symbol map, sorted by address
        (pipe through `swift demangle --simplified` for readable names)
    tessera generate SERVER.server INTERFACES-DIR OUTPUT.swift MANIFEST.bin
        generate a server's proxies, dispatch functions and binary manifest
    tessera generate-kernel INTERFACES-DIR OUTPUT.swift INTERFACE...
        generate dispatch functions for interfaces the kernel implements
    tessera inspect SERVER.srv...
        print a server file's manifest, interfaces with signatures, sizes and imports
    tessera check SYSTEM.system [SERVER-DIR...]
        check a composition without booting: server files valid, every slot bound to a
        structurally matching interface, run targets provide Program
        (server files are looked up in build/servers and build/test-modules by default)
    tessera bench-report CONSOLE.log RESULTS.json
        turn the @@BENCH lines of a benchmark run into a table and a JSON file
    tessera symbolize LOG [SERVER-DIR]
        print a serial log with the function, file and line behind every server fault's
        image offset (from SERVER-DIR/NAME/server.debug.so, build/servers by default;
        needs llvm-symbolizer)
  """

/// Prints the symbol map of the ELF file at `path`.
func printSymbols(path: String) {
  guard let data = FileManager.default.contents(atPath: path) else { fail("\(path): cannot read") }
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

/// Runs `body`, turning declaration errors into `tessera: reason` and status 1.
func reportingErrors(_ body: () throws -> Void) {
  do { try body() } catch { fail("\(error)") }
}

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "symbols" where arguments.count == 2:
  printSymbols(path: arguments.last!)
case "generate" where arguments.count == 5:
  reportingErrors {
    let server = try parseServer(try readText(arguments[1]), file: arguments[1])
    let catalog = try loadInterfaces(directory: arguments[2], server: arguments[1])
    try writeFile(arguments[3], Data(try serverSource(server, catalog: catalog).utf8))
    try writeFile(arguments[4], Data(try manifestBytes(server, catalog: catalog)))
  }
case "generate-kernel" where arguments.count >= 4:
  reportingErrors {
    let catalog = try loadInterfaces(directory: arguments[1])
    try writeFile(arguments[2], Data(try kernelSource(Array(arguments[3...]), catalog: catalog).utf8))
  }
case "inspect" where arguments.count >= 2:
  reportingErrors {
    for path in arguments.dropFirst() {
      guard let data = FileManager.default.contents(atPath: path) else {
        throw LanguageError(file: path, line: 0, reason: "cannot read the file")
      }
      print(try data.withUnsafeBytes { try inspectServerFile($0, path: path) })
    }
  }
case "check" where arguments.count >= 2:
  reportingErrors {
    let directories = arguments.count > 2 ? Array(arguments[2...]) : ["build/servers", "build/test-modules"]
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
case "bench-report" where arguments.count == 3:
  reportingErrors {
    let results = try benchmarkResults(fromConsole: try readText(arguments[1]), file: arguments[1])
    print(benchmarkTable(results))
    try writeFile(arguments[2], Data(benchmarkJSON(results).utf8))
    print("wrote \(arguments[2])")
  }
case "symbolize" where arguments.count == 2 || arguments.count == 3:
  reportingErrors {
    let log = try readText(arguments[1])
    print(symbolize(log: log, serverDirectory: arguments.count == 3 ? arguments[2] : "build/servers"))
  }
case "help", "--help", "-h":
  print(usage)
default:
  fail("unknown or incomplete command\n\(usage)", status: 2)
}
