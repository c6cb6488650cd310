// GraphTests: `tessera graph` draws a composition (instances by placement, bindings,
// kernel services, run targets) and refuses a malformed one with its line; files that
// cannot be read say why.

import Foundation
import TesseraTools
import Testing

@Suite struct GraphTests {
  let composition = """
    server disk RamDisk.srv
      bind console kernel.console
    server fs SimpleFS.srv user:storage restart
      bind device disk
    server client FileClient.srv user
      bind filesystem fs
      bind root fs.getRootDirectory
    run client
    server fs SimpleFS.srv
    run fs
    """

  @Test func instancesBindingsServicesAndRunTargets() throws {
    let dot = try compositionGraph(path: "systems/example.system", text: composition)
    #expect(dot.hasPrefix(#"digraph "example" {"#))
    #expect(dot.contains(#"label="kernel mode""#))
    #expect(dot.contains(#"label="user space storage""#))
    #expect(dot.contains(#"label="user mode (a space each)""#))
    #expect(dot.contains(#""fs" [label="fs\nSimpleFS.srv\nuser space storage, restart"];"#))
    #expect(dot.contains(#""client" [label="client\nFileClient.srv\nuser mode", penwidth=2];"#))
    #expect(dot.contains(#""kernel.console" [shape=ellipse, style=dashed];"#))
    #expect(dot.contains(#""disk" -> "kernel.console" [label="console", style=dashed];"#))
    #expect(dot.contains(#""fs" -> "disk" [label="device"];"#))
    #expect(dot.contains(#""client" -> "fs" [label="root = .getRootDirectory()"];"#))
    // The second group's fs is another instance.
    #expect(dot.contains(#""fs#2" [label="fs\nSimpleFS.srv\nkernel mode", penwidth=2];"#))
  }

  @Test func aMalformedLineIsAnErrorWithItsLine() {
    #expect(throws: LanguageError.self) {
      try compositionGraph(path: "bad.system", text: "server fs SimpleFS.srv\nbind\n")
    }
    do {
      _ = try compositionGraph(path: "bad.system", text: "server fs SimpleFS.srv\nfrobnicate x\n")
      Issue.record("accepted a malformed line")
    } catch let error as LanguageError {
      #expect(error.file == "bad.system" && error.line == 2, "\\(error)")
    } catch {
      Issue.record("\\(error)")
    }
  }

  @Test func unreadableFilesSayWhy() {
    let missing = "/nonexistent/\\(UUID().uuidString)"
    #expect(
      throws: LanguageError(file: missing, line: 0, reason: "cannot read the file: there is no such file")
    ) {
      try readText(missing)
    }
    let folder = FileManager.default.temporaryDirectory.path
    #expect(throws: LanguageError(file: folder, line: 0, reason: "cannot read the file: it is a directory")) {
      try readText(folder)
    }
  }

  @Test func quotesAndBackslashesAreEscaped() throws {
    let dot = try compositionGraph(path: "q.system", text: #"server odd x\"y.srv"# + "\n")
    #expect(dot.contains(#"[label="odd\nx\\\"y.srv\nkernel mode"];"#), "\(dot)")
  }

}
