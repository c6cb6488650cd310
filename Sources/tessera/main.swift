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

extension KernelMessage {
  /// The message as a host string.
  var string: String { withBytes { String(decoding: $0, as: UTF8.self) } }
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
case "help", "--help", "-h":
  print(usage)
default:
  fail("unknown or incomplete command\n\(usage)", status: 2)
}
