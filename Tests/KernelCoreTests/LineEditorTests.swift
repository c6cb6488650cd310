// LineEditorTests: the shell's line editing, fed the bytes a VT100 terminal sends
// (escape sequences included), checked by the line it makes and what it echoes.

import KernelCore
import Testing

@Suite struct LineEditorTests {
  /// Feeds `text`'s bytes; the events other than `.none`.
  func type(_ text: String, into editor: inout LineEditor) -> [LineEditor.Event] {
    text.utf8.map { editor.feed($0) }.filter { $0 != .none }
  }

  func string(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

  @Test func typingEchoesAndEnterFinishesTheLineOnce() {
    var editor = LineEditor()
    #expect(type("help\r\n", into: &editor) == [.line])  // CR LF is one Enter
    #expect(string(editor.line) == "help")
    #expect(string(editor.output) == "help\r\n")
  }

  @Test func backspaceAndTheArrowsEditInTheMiddle() {
    var editor = LineEditor()
    // "refs fs", two lefts, backspace (the space), "X", then End.
    _ = type("refs fs\u{1B}[D\u{1B}[D\u{7F}X\u{1B}[F", into: &editor)
    #expect(string(editor.line) == "refsXfs" && editor.cursor == 7)
    editor.output = []
    // Home, Delete, right arrow, Ctrl-E.
    _ = type("\u{1B}[H\u{1B}[3~\u{1B}[C\u{5}", into: &editor)
    #expect(string(editor.line) == "efsXfs" && editor.cursor == 6)
    // What the terminal got: cursor moves and a redrawn tail, never a stray byte.
    #expect(string(editor.output) == "\u{1B}[7D" + "efsXfs \u{1B}[7D" + "e" + "fsXfs")
  }

  @Test func historyWalksUpAndDownAndKeepsTheDraft() {
    var editor = LineEditor()
    _ = type("servers\r", into: &editor)
    editor.reset()
    _ = type("threads\r", into: &editor)
    editor.reset()
    _ = type("mem", into: &editor)
    _ = type("\u{1B}[A", into: &editor)
    #expect(string(editor.line) == "threads")
    _ = type("\u{1B}[A\u{1B}[A", into: &editor)  // the oldest stays
    #expect(string(editor.line) == "servers")
    _ = type("\u{1B}[B\u{1B}[B", into: &editor)
    #expect(string(editor.line) == "mem", "down past the newest gives the draft back")
    #expect(type("\r", into: &editor) == [.line] && string(editor.line) == "mem")
  }

  @Test func ctrlCAbandonsTheLine() {
    var editor = LineEditor()
    #expect(type("crash\u{3}", into: &editor) == [.cancelled])
    #expect(string(editor.output).hasSuffix("^C\r\n"))
    editor.reset()
    #expect(editor.line.isEmpty)
  }

  @Test func aLongLineIsMarkedNotCut() {
    var editor = LineEditor(maximumLength: 8)
    #expect(type("0123456789\r", into: &editor) == [.line])
    #expect(editor.tooLong && string(editor.line) == "01234567")
    #expect(editor.output.filter { $0 == 7 }.count == 1, "the bell rings once for the refused characters")
    editor.reset()
    #expect(!editor.tooLong)
    // Edited after the refusal, the line on the screen is the one that runs.
    _ = type("0123456789\u{7F}\u{7F}", into: &editor)
    #expect(!editor.tooLong && string(editor.line) == "012345")
  }

  @Test func controlCharactersEndEscapeSequences() {
    // Ctrl-C inside an unfinished sequence still abandons the line; Enter after a stray
    // ESC still finishes it; ESC and a letter (Alt) types the letter.
    var editor = LineEditor()
    #expect(type("abc\u{1B}[\u{3}", into: &editor) == [.cancelled])
    editor.reset()
    #expect(type("help\u{1B}\r", into: &editor) == [.line] && string(editor.line) == "help")
    editor.reset()
    _ = type("hel\u{1B}p", into: &editor)
    #expect(string(editor.line) == "help")
    // Modifier keys (Ctrl-Right is ESC [ 1 ; 5 C) insert nothing; Ctrl-Delete deletes.
    editor.reset()
    _ = type("help\u{1B}[1;5C\u{1B}[D\u{1B}[3;5~", into: &editor)
    #expect(string(editor.line) == "hel")
  }

  @Test func tabCompletesAUniqueWordAndListsSeveral() {
    var editor = LineEditor()
    #expect(type("thr\t", into: &editor) == [.complete])
    editor.complete(candidates: ["threads", "help"].map { Array($0.utf8) }, prompt: Array("> ".utf8))
    #expect(string(editor.line) == "threads ")
    editor.reset()
    editor.output = []
    _ = type("refs s", into: &editor)
    #expect(editor.currentWordIndex == 1 && string(editor.currentWord) == "s")
    editor.complete(candidates: ["serial", "shell", "fs"].map { Array($0.utf8) }, prompt: Array("> ".utf8))
    #expect(string(editor.line) == "refs s", "no common prefix longer than the word")
    #expect(string(editor.output).hasSuffix("\r\nserial  shell\r\n> refs s"))
    editor.complete(candidates: ["shell"].map { Array($0.utf8) }, prompt: [])
    #expect(string(editor.line) == "refs shell ")
  }

  @Test func garbageIsNotTaken() {
    var editor = LineEditor()
    _ = type("a\u{0}\u{7}\u{1B}[99Zb\u{1B}Oqc", into: &editor)
    #expect(string(editor.line) == "abc")
    var bytes = LineEditor()
    for byte: UInt8 in [0xFF, 0xC3, 0xA9, 0x41] { _ = bytes.feed(byte) }
    #expect(string(bytes.line) == "A")
  }
}
