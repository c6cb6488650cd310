// Composition: the text that says which servers a system loads and how they connect.
//
// Contract: a composition is read line by line without allocating; each meaningful line
// is one `CompositionStatement`, and a malformed line is a `CompositionError` with its
// line number. The kernel and `tessera check` use this same reader. Syntax:
//
//   # comment
//   server INSTANCE FILE [PLACEMENT] [restart]
//                               load FILE (a boot module's name) as INSTANCE; PLACEMENT
//                               is `kernel` (the default: kernel mode, in the kernel's
//                               address space), `user` (user mode, in an address space
//                               of its own) or `user:SPACE` (user mode, in the address
//                               space SPACE, shared with the other servers naming it);
//                               `restart` restarts the instance when it fails
//     bind SLOT SOURCE          bind a required slot of the last server; SOURCE is
//                               kernel.SERVICE | INSTANCE | INSTANCE.METHOD |
//                               INSTANCE.METHOD(WORD,...) (the reference a method of
//                               INSTANCE's main object returns, called with up to four
//                               words, decimal or 0x hexadecimal, no spaces) | none
//                               (left empty on purpose: every call through the slot
//                               fails with invalidHandle, so a server can do without it)
//     set NAME VALUE            a setting of the last server (one word of at most 64
//                               bytes), read through kernel.settings
//     limit RESOURCE VALUE      a quota of the last server (Quotas.swift): memory
//                               (bytes, or with K or M), threads, priority, timers,
//                               mappings
//   run INSTANCE                call run() of INSTANCE's Program object once all is loaded
//
// A server's slots must all be bound before the next `server` or `run` line.

/// Why a composition line was rejected.
public struct CompositionError: Error, Equatable, Sendable {
  /// The 1-based line.
  public var line: Int
  /// What is wrong.
  public var reason: KernelMessage
}

/// Where a binding's reference comes from.
public enum BindingSource {
  /// A service the kernel provides (`kernel.console`).
  case kernel(UnsafeBufferPointer<UInt8>)
  /// The main object of an instance.
  case instance(UnsafeBufferPointer<UInt8>)
  /// Nothing (`none`): the slot is left empty on purpose, and calls through it fail.
  case none
  /// The reference a method of an instance's main object returns, called with the words.
  case method(
    instance: UnsafeBufferPointer<UInt8>, method: UnsafeBufferPointer<UInt8>, arguments: MethodArguments)
}

/// The word arguments of a method binding (`pci.find(0x10EC,0x8139)`).
public struct MethodArguments: Sendable {
  /// The most a binding passes.
  public static let maximumCount = 4
  /// How many there are.
  public private(set) var count = 0
  private var storage: InlineArray<4, UInt32> = .init(repeating: 0)

  /// No arguments.
  public init() {}

  /// The argument at `index` (below `count`).
  public subscript(index: Int) -> UInt32 { storage[index] }

  /// Appends `word`; false when there are `maximumCount` already.
  mutating func append(_ word: UInt32) -> Bool {
    guard count < Self.maximumCount else { return false }
    storage[count] = word
    count += 1
    return true
  }

  /// Calls `body` with the arguments as a buffer.
  public func withWords<Result>(_ body: (UnsafeBufferPointer<UInt32>) -> Result) -> Result {
    var copy = storage
    return withUnsafeMutableBytes(of: &copy) { raw in
      body(UnsafeBufferPointer(start: raw.baseAddress!.assumingMemoryBound(to: UInt32.self), count: count))
    }
  }
}

/// Where a server is loaded.
public enum ServerPlacement: Equatable {
  /// Kernel mode, in the kernel's address space.
  case kernel
  /// User mode, in an address space of its own.
  case user
  /// User mode, in the named address space (shared with the others that name it).
  case sharedUser(space: UnsafeBufferPointer<UInt8>)

  /// Whether two placements are the same (shared spaces compare by name).
  public static func == (left: ServerPlacement, right: ServerPlacement) -> Bool {
    switch (left, right) {
    case (.kernel, .kernel), (.user, .user): true
    case (.sharedUser(let a), .sharedUser(let b)): equal(UnsafeRawBufferPointer(a), UnsafeRawBufferPointer(b))
    default: false
    }
  }
}

/// One line of a composition.
public enum CompositionStatement {
  case server(
    instance: UnsafeBufferPointer<UInt8>, file: UnsafeBufferPointer<UInt8>, placement: ServerPlacement,
    restart: Bool)
  case bind(slot: UnsafeBufferPointer<UInt8>, source: BindingSource)
  case limit(resource: QuotaResource, value: UInt32)
  case setting(name: UnsafeBufferPointer<UInt8>, value: UnsafeBufferPointer<UInt8>)
  case run(instance: UnsafeBufferPointer<UInt8>)
}

/// A composition's text as a sequence of statements with line numbers.
public struct Composition: Sequence {
  private let text: UnsafeBufferPointer<UInt8>

  /// A composition over `text`.
  public init(text: UnsafeBufferPointer<UInt8>) { self.text = text }

  /// Iterates statements; a malformed line yields `.failure` and ends the iteration.
  public struct Iterator: IteratorProtocol {
    fileprivate let text: UnsafeBufferPointer<UInt8>
    fileprivate var offset = 0
    fileprivate var line = 0
    fileprivate var failed = false

    /// The next statement with its line, or nil at the end.
    public mutating func next() -> (line: Int, statement: Result<CompositionStatement, CompositionError>)? {
      while !failed && offset < text.count {
        line += 1
        var end = offset
        while end < text.count && text[end] != UInt8(ascii: "\n") { end += 1 }
        let lineText = UnsafeBufferPointer(rebasing: text[offset..<end])
        offset = end + 1
        var words: InlineArray<5, (Int, Int)> = .init(repeating: (0, 0))
        var count = 0
        var index = 0
        while index < lineText.count {
          while index < lineText.count
            && (lineText[index] == 32 || lineText[index] == 9 || lineText[index] == 13)
          { index += 1 }
          guard index < lineText.count, lineText[index] != UInt8(ascii: "#") else { break }
          let start = index
          while index < lineText.count && lineText[index] != 32 && lineText[index] != 9
            && lineText[index] != 13
          { index += 1 }
          guard count < 5 else { return fail("too many words") }
          words[count] = (start, index)
          count += 1
        }
        guard count > 0 else { continue }
        func word(_ number: Int) -> UnsafeBufferPointer<UInt8> {
          UnsafeBufferPointer(rebasing: lineText[words[number].0..<words[number].1])
        }
        let keyword = word(0)
        if equals(keyword, "server") {
          guard count >= 3 else { return fail("expected: server INSTANCE FILE [PLACEMENT] [restart]") }
          guard isName(word(1)) else { return fail("instance name must be an identifier") }
          guard !equals(word(1), "none") else { return fail("`none` is reserved (bind SLOT none)") }
          var placement = ServerPlacement.kernel
          var restart = false
          var next = 3
          if next < count, !equals(word(next), "restart") {
            let text = word(next)
            if equals(text, "user") {
              placement = .user
            } else if text.count > 5, equals(UnsafeBufferPointer(rebasing: text[0..<5]), "user:"),
              isName(UnsafeBufferPointer(rebasing: text[5...]))
            {
              placement = .sharedUser(space: UnsafeBufferPointer(rebasing: text[5...]))
            } else if !equals(text, "kernel") {
              return fail("placement must be kernel, user or user:SPACE")
            }
            next += 1
          }
          if next < count {
            guard equals(word(next), "restart") else { return fail("expected `restart` after the placement") }
            restart = true
            next += 1
          }
          guard next == count else { return fail("expected: server INSTANCE FILE [PLACEMENT] [restart]") }
          return (
            line,
            .success(.server(instance: word(1), file: word(2), placement: placement, restart: restart))
          )
        }
        if equals(keyword, "bind") {
          guard count == 3, isName(word(1)) else { return fail("expected: bind SLOT SOURCE") }
          let source = word(2)
          if equals(source, "none") { return (line, .success(.bind(slot: word(1), source: .none))) }
          var dot = 0
          while dot < source.count && source[dot] != UInt8(ascii: ".") { dot += 1 }
          let left = UnsafeBufferPointer(rebasing: source[0..<dot])
          guard isName(left) else { return fail("binding source must start with an identifier") }
          if dot == source.count { return (line, .success(.bind(slot: word(1), source: .instance(left)))) }
          var right = UnsafeBufferPointer(rebasing: source[(dot + 1)...])
          var arguments = MethodArguments()
          if let open = right.firstIndex(of: UInt8(ascii: "(")) {
            guard right.last == UInt8(ascii: ")"), !equals(left, "kernel") else {
              return fail("expected INSTANCE.METHOD(WORD,...) with no spaces")
            }
            guard
              let parsed = Self.arguments(
                UnsafeBufferPointer(rebasing: right[(open + 1)..<(right.count - 1)]))
            else {
              return fail(
                "method arguments must be up to \(MethodArguments.maximumCount) words (decimal or 0x hexadecimal) separated by commas"
              )
            }
            arguments = parsed
            right = UnsafeBufferPointer(rebasing: right[0..<open])
          }
          guard isName(right) else { return fail("expected SOURCE.NAME with identifiers") }
          if equals(left, "kernel") {
            return (line, .success(.bind(slot: word(1), source: .kernel(right))))
          }
          return (
            line,
            .success(
              .bind(slot: word(1), source: .method(instance: left, method: right, arguments: arguments)))
          )
        }
        if equals(keyword, "limit") {
          guard count == 3 else { return fail("expected: limit RESOURCE VALUE") }
          guard let resource = QuotaResource.named(word(1)) else {
            return fail("limit: the resources are memory, threads, priority, timers and mappings")
          }
          guard let value = Quotas.value(word(2), for: resource) else {
            let minimum = resource == .priority ? 0 : 1
            return fail(
              "limit \(resource.name): the value must be a number from \(minimum) to \(resource.maximum)")
          }
          return (line, .success(.limit(resource: resource, value: value)))
        }
        if equals(keyword, "set") {
          guard count == 3, isName(word(1)) else { return fail("expected: set NAME VALUE") }
          guard word(2).count <= Self.maximumSettingLength else {
            return fail("set: the value is longer than \(Self.maximumSettingLength) bytes")
          }
          return (line, .success(.setting(name: word(1), value: word(2))))
        }
        if equals(keyword, "run") {
          guard count == 2, isName(word(1)) else { return fail("expected: run INSTANCE") }
          return (line, .success(.run(instance: word(1))))
        }
        return fail("unknown statement (expected server, bind, limit, set or run)")
      }
      return nil
    }

    private mutating func fail(_ reason: KernelMessage) -> (
      line: Int, statement: Result<CompositionStatement, CompositionError>
    ) {
      failed = true
      return (line, .failure(CompositionError(line: line, reason: reason)))
    }

    /// The longest setting value.
    static let maximumSettingLength = 64

    /// `WORD,WORD,...` (possibly empty) as words; nil if one is not a number that fits 32
    /// bits or there are too many.
    private static func arguments(_ text: UnsafeBufferPointer<UInt8>) -> MethodArguments? {
      var arguments = MethodArguments()
      guard !text.isEmpty else { return arguments }
      var start = 0
      while start <= text.count {
        var end = start
        while end < text.count && text[end] != UInt8(ascii: ",") { end += 1 }
        guard let word = number(UnsafeBufferPointer(rebasing: text[start..<end])), arguments.append(word)
        else {
          return nil
        }
        start = end + 1
      }
      return arguments
    }

    /// A decimal or `0x` hexadecimal number that fits 32 bits.
    static func number(_ text: UnsafeBufferPointer<UInt8>) -> UInt32? {
      var digits = text
      var radix: UInt64 = 10
      if text.count > 2, text[0] == UInt8(ascii: "0"), text[1] | 0x20 == UInt8(ascii: "x") {
        digits = UnsafeBufferPointer(rebasing: text[2...])
        radix = 16
      }
      guard !digits.isEmpty, digits.count <= 10 else { return nil }
      var value: UInt64 = 0
      for character in digits {
        let digit: UInt64
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt64(character - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f") where radix == 16:
          digit = UInt64(character - UInt8(ascii: "a") + 10)
        case UInt8(ascii: "A")...UInt8(ascii: "F") where radix == 16:
          digit = UInt64(character - UInt8(ascii: "A") + 10)
        default: return nil
        }
        value = value * radix + digit
      }
      return value <= UInt64(UInt32.max) ? UInt32(value) : nil
    }

    private func isName(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
      guard !bytes.isEmpty, bytes.count <= InterfaceDescriptor.maximumNameLength else { return false }
      for (index, character) in bytes.enumerated() {
        let letter = (character | 0x20) >= UInt8(ascii: "a") && (character | 0x20) <= UInt8(ascii: "z")
        let digit = character >= UInt8(ascii: "0") && character <= UInt8(ascii: "9")
        guard letter || character == UInt8(ascii: "_") || (digit && index > 0) else { return false }
      }
      return true
    }
  }

  /// An iterator.
  public func makeIterator() -> Iterator { Iterator(text: text) }
}
