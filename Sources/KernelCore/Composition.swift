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
//                               kernel.SERVICE | INSTANCE | INSTANCE.METHOD
//                               (the reference a no-argument method of INSTANCE returns)
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
  /// The reference a no-argument method of an instance's main object returns.
  case method(instance: UnsafeBufferPointer<UInt8>, method: UnsafeBufferPointer<UInt8>)
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
          var dot = 0
          while dot < source.count && source[dot] != UInt8(ascii: ".") { dot += 1 }
          let left = UnsafeBufferPointer(rebasing: source[0..<dot])
          guard isName(left) else { return fail("binding source must start with an identifier") }
          if dot == source.count { return (line, .success(.bind(slot: word(1), source: .instance(left)))) }
          let right = UnsafeBufferPointer(rebasing: source[(dot + 1)...])
          guard isName(right) else { return fail("expected SOURCE.NAME with identifiers") }
          if equals(left, "kernel") {
            return (line, .success(.bind(slot: word(1), source: .kernel(right))))
          }
          return (line, .success(.bind(slot: word(1), source: .method(instance: left, method: right))))
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
        if equals(keyword, "run") {
          guard count == 2, isName(word(1)) else { return fail("expected: run INSTANCE") }
          return (line, .success(.run(instance: word(1))))
        }
        return fail("unknown statement (expected server, bind, limit or run)")
      }
      return nil
    }

    private mutating func fail(_ reason: KernelMessage) -> (
      line: Int, statement: Result<CompositionStatement, CompositionError>
    ) {
      failed = true
      return (line, .failure(CompositionError(line: line, reason: reason)))
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
