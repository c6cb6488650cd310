// InterfaceLanguageTests: the interface language, generated code and manifests, and
// `tessera check` on compositions.

import Foundation
import KernelCore
import Testing

@testable import TesseraTools

let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent()

@Suite struct InterfaceLanguageTests {
  @Test func theRepositorysInterfacesParseAndDescribeThemselves() throws {
    let catalog = try loadInterfaces(directory: repository.appendingPathComponent("Interfaces").path)
    let directory = try #require(catalog.interfaces["Directory"])
    #expect(
      directory.methods.map(\.name) == [
        "getName", "getDirectory", "getFile", "createDirectory", "createFile", "listDirectories", "listFiles",
      ])
    #expect(directory.methods[0].result == .filled("name"))
    #expect(directory.methods[1].result == .reference("Directory", optional: true))
    for interface in catalog.interfaces.values {
      let bytes = interface.descriptor()
      let descriptor = try bytes.withUnsafeBytes { try InterfaceDescriptor(bytes: $0) }
      #expect(descriptor.methodCount == interface.methods.count)
    }
  }

  @Test func changingASignatureChangesTheIdentity() throws {
    let before = try parseInterfaces("interface A {\n func f(x: word) -> word\n}", file: "a.tif")[0]
    let renamedParameter = try parseInterfaces("interface A {\n func f(y: word) -> word\n}", file: "a.tif")[0]
    let changed = try parseInterfaces("interface A {\n func f(x: in bytes[8]) -> word\n}", file: "a.tif")[0]
    #expect(before.descriptor() == renamedParameter.descriptor(), "parameter names are not structure")
    #expect(digest(of: before) != digest(of: changed))
  }

  @Test(arguments: [
    ("interface A {\n func f(x: word\n}", "a.tif:3: expected ')'"),
    ("interface A {\n func f(x: out bytes[0])\n}", "a.tif:2: a block's maximum must be 1 to 1048576 bytes"),
    (
      "interface A {\n func f(x: word) -> filled(x)\n}",
      "a.tif:2: 'filled(x)' must name an out or inout bytes parameter"
    ),
    ("interface A {\n func f() \n func f()\n}", "a.tif:3: method 'f' is declared twice"),
    ("interface word {\n}", "a.tif:1: 'word' is a reserved word"),
    (
      "interface A {\n func f(a: in bytes[8], b: in bytes[8], c: in bytes[8], d: in bytes[8], e: word)\n}",
      "a.tif:2: 'f' takes 9 call words; at most 8 (a block counts 2)"
    ),
    ("interface A { $ }", "a.tif:1: unexpected character '$'"),
    ("interface A {\n func f(x: word,\n x: word)\n}", "a.tif:3: parameter 'x' of 'f' is declared twice"),
    ("interface A {\n func f(self: word)\n}", "a.tif:2: 'self' is a reserved word"),
    ("interface A {\n func f(handle: word)\n}", "a.tif:2: 'handle' is a reserved word"),
    ("interface A {\n func return()\n}", "a.tif:2: 'return' is a reserved word"),
    ("interface A {\n func f(in: word)\n}", "a.tif:2: 'in' is a reserved word"),
    ("interface Int {\n}", "a.tif:1: 'Int' is a reserved word"),
  ])
  func reportsErrorsWithTheirLine(source: String, message: String) {
    #expect(throws: LanguageError.self) { _ = try parseInterfaces(source, file: "a.tif") }
    do {
      _ = try parseInterfaces(source, file: "a.tif")
    } catch {
      #expect("\(error)" == message)
    }
  }

  @Test func unknownReferencedInterfacesAreRejected() {
    let declarations = try! parseInterfaces(
      "/// B.\ninterface B {\n}\n\ninterface A {\n func f() -> Missing\n}", file: "a.tif")
    #expect(throws: LanguageError.self) { _ = try InterfaceCatalog(declarations) }
    do {
      _ = try InterfaceCatalog(declarations)
    } catch {
      // Its line, the kinds a parameter may have, and the interfaces there are.
      #expect(
        "\(error)"
          == "a.tif:5: interface 'A' uses unknown interface 'Missing' (a parameter is word, in/out/inout bytes[N] or an interface; the interfaces: A, B)"
      )
    }
  }

  @Test func serversParseAndProduceValidManifests() throws {
    let catalog = try loadInterfaces(directory: repository.appendingPathComponent("Interfaces").path)
    let path = repository.appendingPathComponent("Servers/SimpleFS/SimpleFS.server").path
    let server = try parseServer(try readText(path), file: path)
    #expect(server.provides == "Filesystem" && server.exports == ["Directory", "File", "Iterator"])
    #expect(server.requires.map(\.slot) == ["device"])
    let bytes = try manifestBytes(server, catalog: catalog)
    try bytes.withUnsafeBytes { raw in
      let manifest = try ServerManifest(bytes: raw)
      #expect(manifest.exportCount == 4 && manifest.slotCount == 1 && !manifest.isThreadSafe)
      #expect(
        String(decoding: manifest.interface(manifest.providedInterface).name, as: UTF8.self) == "Filesystem")
    }
    let source = try serverSource(server, catalog: catalog)
    #expect(source.contains("public struct BlockDevice: InterfaceReference"))
    #expect(source.contains("tessera_call3(handle, Self.digest &+ 2"), "readBlock passes index and a block")
    // Slot `device` (handle 1) is a BlockDevice: its calls go through the slot's bound-call
    // imports, declared once; any other handle through the general tessera_callN.
    #expect(source.contains("@_extern(c, \"tessera_bound_call3_1_2\")"))
    #expect(
      source.contains(
        "case 1: callResult = tessera_bound_call3_1_2(handle, Self.digest &+ 2, UInt32(truncatingIfNeeded: index)"
      ))
    #expect(source.contains("default: callResult = tessera_call3(handle, Self.digest &+ 2"))
    #expect(source.contains("@_cdecl(\"tessera_dispatch_Directory_6\")"))
    #expect(source.contains("public static var device: BlockDevice { BlockDevice(handle: 1) }"))
  }

  @Test func serverDeclarationErrors() {
    #expect(throws: LanguageError.self) {
      _ = try parseServer("server S: A {\n requires x: A\n requires x: B\n}", file: "s")
    }
    #expect(throws: LanguageError.self) { _ = try parseServer("server S: A {\n launch\n}", file: "s") }
  }
}

@Suite struct CompositionCheckTests {
  func check(_ system: String) throws -> [String] {
    try checkComposition(
      path: repository.appendingPathComponent(system).path,
      serverDirectories: [
        repository.appendingPathComponent("build/servers").path,
        repository.appendingPathComponent("build/test-modules").path,
      ],
      interfaces: try loadInterfaces(directory: repository.appendingPathComponent("Interfaces").path))
  }

  @Test func theDefaultSystemChecksClean() throws {
    try #require(
      FileManager.default.fileExists(
        atPath: repository.appendingPathComponent("build/servers/SimpleFS.srv").path),
      "run `make test`, which builds the servers first")
    for system in [
      "systems/default.system", "systems/isolated.system", "systems/bench.system", "systems/template.system",
      "systems/tests/network-peer.system",
      "systems/tests/network-peer-isolated.system",
    ] {
      #expect(try check(system) == [], "\(system)")
    }
  }

  @Test func mismatchesAndBrokenFilesAreReported() throws {
    try #require(
      FileManager.default.fileExists(
        atPath: repository.appendingPathComponent("build/test-modules/Lying.srv").path),
      "run `make test`, which builds the test modules first")
    let mismatch = try check("systems/tests/mismatch.system")
    #expect(mismatch.count == 4, "\(mismatch)")
    #expect(
      mismatch.contains {
        $0.contains("mismatch.system:23: the kernel offers no service printer (it offers: console")
      })
    #expect(
      mismatch[0].hasSuffix(
        "mismatch.system:7: cannot bind oldfs.device: it requires BlockDevice, the source provides BlockDevice: first difference in method 1 (blockCount)"
      ))
    let corrupt = try check("systems/tests/corrupt.system")
    #expect(corrupt.count == 4, "\(corrupt)")
    #expect(
      corrupt.contains {
        $0.hasSuffix(
          "corrupt.system:11: badmanifest: server file BadManifest.srv rejected: manifest: manifest does not start with TSRV version 1"
        )
      })
  }

  /// As the kernel: a second bus server is refused kernel.pci (and not started), and a slot
  /// bound to `none` counts as bound.
  @Test func configurationSpaceHasOneKeeper() throws {
    let problems = try check("systems/tests/driver-refusals.system")
    #expect(
      problems.contains {
        $0.hasSuffix(
          "driver-refusals.system:37: cannot bind rival.config: kernel.pci is bound to pci already, and one server at a time may keep it"
        )
      }, "\(problems)")
    #expect(
      problems.contains {
        $0.hasSuffix("driver-refusals.system:36: rival: slot config is not bound; not started")
      })
  }

  @Test func inspectDescribesGoodFilesAndNamesTheProblemWithBadOnes() throws {
    let path = repository.appendingPathComponent("build/servers/SimpleFS.srv").path
    let data = try #require(
      FileManager.default.contents(atPath: path), "run `make test`, which builds the servers first")
    let report = try data.withUnsafeBytes { try inspectServerFile($0, path: "SimpleFS.srv") }
    #expect(report.contains("server SimpleFS"))
    #expect(report.contains("1. device: BlockDevice"))
    #expect(report.contains("2. read(word, out bytes[4096]) -> filled(parameter 1)"))
    #expect(report.contains("imports: ") && report.contains("tessera_call3"))
    var broken = [UInt8](data)
    broken.removeLast(broken.count / 2)
    #expect(throws: LanguageError.self) {
      try broken.withUnsafeBytes { _ = try inspectServerFile($0, path: "half.srv") }
    }
    do {
      _ = try broken.withUnsafeBytes { try inspectServerFile($0, path: "half.srv") }
    } catch {
      #expect("\(error)".hasPrefix("half.srv: not a valid server file: "))
    }
  }
}
