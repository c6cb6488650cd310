// LineEditor: the shell's line editing on a VT100-style terminal, byte by byte.
//
// Contract: `feed(byte)` takes one byte the terminal sent and returns what happened (a
// finished line, a cancelled one, a completion asked for, or nothing yet), appending what
// to send back to the terminal (echo, cursor moves) to `output`. It understands printable
// ASCII, backspace (8 or 127), Enter (CR, LF, or CR LF: one line), Ctrl-C (abandon the
// line), Ctrl-A / Ctrl-E and Home / End, the arrow keys (left and right move the cursor,
// up and down walk the history), Delete (ESC [ 3 ~), and Tab (`.complete`: the caller
// answers with `complete(candidates:)`). A line holds at most `maximumLength` characters;
// past that, typed characters are not taken (the terminal's bell rings) and the line is
// marked `tooLong` until it is edited (the caller says so and does not run it: nothing is
// cut off silently). A control character ends any escape sequence and counts as itself;
// an escape sequence's parameters after the first (modifier keys) are ignored. Allocation happens only in
// the line and history arrays; the same code runs in the kernel-mode or user-mode shell
// and on the host (LineEditorTests).

/// One terminal line being edited, with a history of earlier lines.
public struct LineEditor {
  /// What a byte did. (A struct, not an enum: a plain enum would be Hashable, and its
  /// hashing would pull the runtime's random seeding into every server that links
  /// KernelCore.)
  public struct Event: Equatable, Sendable {
    private let value: UInt8
    /// Nothing for the caller yet.
    public static let none = Event(value: 0)
    /// Enter: the line is finished (`tooLong` if characters were refused).
    public static let line = Event(value: 1)
    /// Ctrl-C: the line was abandoned (the caller prompts again).
    public static let cancelled = Event(value: 2)
    /// Tab: the caller should call `complete(candidates:)` with what the word before the
    /// cursor may become.
    public static let complete = Event(value: 3)
  }

  /// The longest line taken.
  public let maximumLength: Int
  /// The line so far.
  public private(set) var line: [UInt8] = []
  /// Where the cursor is in `line`.
  public private(set) var cursor = 0
  /// Whether characters were refused because the line was full.
  public private(set) var tooLong = false
  /// What to send to the terminal; the caller sends and empties it.
  public var output: [UInt8] = []

  private var history: [[UInt8]] = []
  private let historyCapacity: Int
  /// Where up/down is in the history (history.count: the line being typed).
  private var historyPosition = 0
  /// The line being typed, kept while the history is shown.
  private var draft: [UInt8] = []
  /// Where an escape sequence is: 0 none, 1 after ESC, 2 after ESC [, 3 after ESC O
  /// (numbers, not an enum, for the reason Event is a struct).
  private var escape: UInt8 = 0
  private var escapeParameter = 0
  /// Semicolons seen in the sequence (parameters after the first are ignored).
  private var parameterCount = 0
  private var lastWasCarriageReturn = false

  /// An empty editor.
  public init(maximumLength: Int = 200, historyCapacity: Int = 32) {
    self.maximumLength = maximumLength
    self.historyCapacity = historyCapacity
  }

  /// Starts a new line (after the caller took the finished one and sent its prompt).
  public mutating func reset() {
    line.removeAll(keepingCapacity: true)
    cursor = 0
    tooLong = false
    historyPosition = history.count
    draft = []
  }

  /// Takes one byte from the terminal.
  public mutating func feed(_ byte: UInt8) -> Event {
    let afterCarriageReturn = lastWasCarriageReturn
    lastWasCarriageReturn = false
    // A control character ends any escape sequence and counts as itself (Ctrl-C or Enter
    // after a stray ESC must not be lost).
    if escape != 0 && byte < 32 && byte != 27 { escape = 0 }
    switch escape {
    case 1:
      escape = byte == UInt8(ascii: "[") ? 2 : (byte == UInt8(ascii: "O") ? 3 : 0)
      escapeParameter = 0
      parameterCount = 0
      guard escape == 0 else { return .none }
      if byte == 27 {
        escape = 1
        return .none
      }
    // ESC and an ordinary character (Alt-key): the character as itself.
    case 3:
      escape = 0
      if byte == UInt8(ascii: "H") { home() } else if byte == UInt8(ascii: "F") { end() }
      return .none
    case 2:
      if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
        // Only the first parameter counts (the second of "1;5C" is the modifier keys).
        if parameterCount == 0 {
          escapeParameter = min(escapeParameter * 10 + Int(byte - UInt8(ascii: "0")), 1000)
        }
        return .none
      }
      if byte == UInt8(ascii: ";") {
        parameterCount += 1
        return .none
      }
      // Any other byte from 0x40 to 0x7E ends the sequence; one below that ends it too
      // (it cannot belong to one), unheeded.
      escape = 0
      switch byte {
      case UInt8(ascii: "A"): showHistory(-1)
      case UInt8(ascii: "B"): showHistory(1)
      case UInt8(ascii: "C"): right()
      case UInt8(ascii: "D"): left()
      case UInt8(ascii: "H"): home()
      case UInt8(ascii: "F"): end()
      case UInt8(ascii: "~"):
        if escapeParameter == 3 { deleteAtCursor() }
        if escapeParameter == 1 || escapeParameter == 7 { home() }
        if escapeParameter == 4 || escapeParameter == 8 { end() }
      default: break
      }
      return .none
    default:
      break
    }
    switch byte {
    case 27:
      escape = 1
    case 13:
      lastWasCarriageReturn = true
      return finish()
    case 10:
      if afterCarriageReturn { return .none }  // the LF of a CR LF
      return finish()
    case 3:
      send("^C\r\n")
      return .cancelled
    case 8, 127:
      guard cursor > 0 else { return .none }
      left()
      deleteAtCursor()
    case 1:
      home()
    case 5:
      end()
    case 9:
      return .complete
    case 32..<127:
      insert(byte)
    default:
      break  // other control characters and bytes above ASCII are not taken
    }
    return .none
  }

  /// Completes the word before the cursor: with one candidate, to it and a space; with
  /// several, to their longest common prefix, or, if that adds nothing, lists them and
  /// shows the line again after `prompt`. Candidates not starting with the word are ignored.
  public mutating func complete(candidates: [[UInt8]], prompt: [UInt8]) {
    let word = currentWord
    let matching = candidates.filter { $0.count >= word.count && $0.starts(with: word) }
    guard let first = matching.first else { return }
    var common = first.count
    for candidate in matching.dropFirst() {
      var shared = 0
      while shared < min(common, candidate.count) && candidate[shared] == first[shared] { shared += 1 }
      common = shared
    }
    if common > word.count {
      for byte in first[word.count..<common] { insert(byte) }
      if matching.count == 1 { insert(UInt8(ascii: " ")) }
    } else if matching.count == 1 {
      insert(UInt8(ascii: " "))
    } else {
      send("\r\n")
      for (index, candidate) in matching.enumerated() {
        if index > 0 { send("  ") }
        output += candidate
      }
      send("\r\n")
      output += prompt
      output += line
      moveLeft(line.count - cursor)
    }
  }

  /// The word before the cursor (what Tab completes).
  public var currentWord: [UInt8] {
    var start = cursor
    while start > 0 && line[start - 1] != UInt8(ascii: " ") { start -= 1 }
    return Array(line[start..<cursor])
  }

  /// Which word of the line the cursor is in (0: the command).
  public var currentWordIndex: Int {
    var start = cursor
    while start > 0 && line[start - 1] != UInt8(ascii: " ") { start -= 1 }
    var words = 0
    var inWord = false
    for position in 0..<start {
      let space = line[position] == UInt8(ascii: " ")
      if !space && !inWord { words += 1 }
      inWord = !space
    }
    return words
  }

  // MARK: editing

  private mutating func finish() -> Event {
    send("\r\n")
    if !line.isEmpty && !tooLong && history.last != line {
      history.append(line)
      if history.count > historyCapacity { history.removeFirst() }
    }
    historyPosition = history.count
    return .line
  }

  private mutating func insert(_ byte: UInt8) {
    guard line.count < maximumLength else {
      // Refused where the user sees it (the bell), and remembered for Enter: the line on
      // the screen is then not the one typed.
      if !tooLong { output.append(7) }
      tooLong = true
      return
    }
    line.insert(byte, at: cursor)
    cursor += 1
    output.append(byte)
    redrawTail(erasing: 0)
  }

  private mutating func deleteAtCursor() {
    guard cursor < line.count else { return }
    tooLong = false  // edited after the refusal: the screen shows the line again
    line.remove(at: cursor)
    redrawTail(erasing: 1)
  }

  /// Writes the line from the cursor to its end, blanks `erasing` characters after it, and
  /// puts the cursor back.
  private mutating func redrawTail(erasing: Int) {
    let tail = line.count - cursor
    output += line[cursor...]
    for _ in 0..<erasing { output.append(UInt8(ascii: " ")) }
    moveLeft(tail + erasing)
  }

  private mutating func left() {
    guard cursor > 0 else { return }
    cursor -= 1
    moveLeft(1)
  }

  private mutating func right() {
    guard cursor < line.count else { return }
    output.append(line[cursor])
    cursor += 1
  }

  private mutating func home() {
    moveLeft(cursor)
    cursor = 0
  }

  private mutating func end() {
    output += line[cursor...]
    cursor = line.count
  }

  /// Replaces the line with the history entry `step` away (-1 older, 1 newer).
  private mutating func showHistory(_ step: Int) {
    let target = historyPosition + step
    guard target >= 0, target <= history.count else { return }
    if historyPosition == history.count { draft = line }
    historyPosition = target
    let replacement = target == history.count ? draft : history[target]
    home()
    send("\u{1B}[K")  // erase to the end of the line
    line = replacement
    tooLong = false
    output += line
    cursor = line.count
  }

  private mutating func moveLeft(_ count: Int) {
    guard count > 0 else { return }
    send("\u{1B}[")
    appendDecimal(count)
    output.append(UInt8(ascii: "D"))
  }

  private mutating func appendDecimal(_ value: Int) {
    if value >= 10 { appendDecimal(value / 10) }
    output.append(UInt8(ascii: "0") + UInt8(value % 10))
  }

  private mutating func send(_ text: StaticString) {
    output += UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount)
  }
}
