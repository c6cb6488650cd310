// InterfaceDescriptor: the machine-readable form of an interface, and structural matching.
//
// Contract: a descriptor is canonical bytes, so an interface's identity is its bytes:
// two interfaces match exactly when their descriptors are equal. Referenced interfaces
// appear by name; parameter names are not part of the structure (renaming one changes
// nothing). Parsing validates everything and reports `DescriptorError`; nothing here
// allocates. Encoding (all integers little-endian):
//
//   interface := u8 nameLength, name, u8 methodCount, method*
//   method    := u8 nameLength, name, u8 parameterCount, parameter*, result
//   parameter := u8 kind (0 word | 1 reference | 2 block)
//                reference: u8 nameLength, interface name
//                block:     u8 direction (1 in | 2 out | 3 inout), u32 maximum bytes
//   result    := u8 kind (0 none | 1 word | 2 reference | 3 optional reference | 4 filled)
//                reference kinds: u8 nameLength, interface name
//                filled: u8 index of the out/inout block parameter whose length it returns
//
// At the call ABI a word and a reference take one machine word, a block two (address,
// size); a call returns one word and a status word (see docs/ARCHITECTURE.md).

/// Why a descriptor or manifest was rejected.
public enum DescriptorError: Error, Equatable, Sendable {
  /// The bytes end inside a field.
  case truncated(offset: Int)
  /// A name is empty, too long, or not an identifier.
  case badName(offset: Int)
  /// An unknown parameter, direction or result kind.
  case badKind(offset: Int)
  /// A block's maximum is zero or above `InterfaceDescriptor.maximumBlockSize`.
  case badBlockBound(offset: Int)
  /// A `filled` result names a parameter that is not an out or inout block.
  case badFilledResult(method: Int)
  /// A method needs more call words than `InterfaceDescriptor.maximumCallWords`.
  case tooManyArguments(method: Int)
  /// Bytes follow the last field.
  case trailingBytes(offset: Int)

  /// A one-line explanation.
  public var message: KernelMessage {
    switch self {
    case .truncated(let offset): "descriptor truncated at offset \(offset)"
    case .badName(let offset): "invalid name at offset \(offset)"
    case .badKind(let offset): "unknown kind at offset \(offset)"
    case .badBlockBound(let offset): "block bound out of range at offset \(offset)"
    case .badFilledResult(let method): "method \(method): 'filled' does not name an out block"
    case .tooManyArguments(let method): "method \(method) needs too many call words"
    case .trailingBytes(let offset): "unexpected bytes at offset \(offset)"
    }
  }
}

/// Kinds of parameters.
public enum ParameterKind: UInt8, Sendable {
  case word = 0
  case reference = 1
  case block = 2
}

/// Which way a block is copied.
public enum BlockDirection: UInt8, Sendable {
  case input = 1
  case output = 2
  case inputOutput = 3

  /// Whether the callee reads the caller's bytes.
  public var copiesIn: Bool { self != .output }
  /// Whether the caller receives the callee's bytes.
  public var copiesOut: Bool { self != .input }
}

/// Kinds of results.
public enum ResultKind: UInt8, Sendable {
  case none = 0
  case word = 1
  case reference = 2
  case optionalReference = 3
  case filled = 4
}

/// One parameter of a method.
public struct ParameterDescriptor {
  /// The kind.
  public var kind: ParameterKind
  /// For references: the interface's name.
  public var interfaceName: UnsafeBufferPointer<UInt8>?
  /// For blocks: the direction.
  public var direction: BlockDirection?
  /// For blocks: the most bytes a call may pass.
  public var maximumSize: UInt32
  /// The number of call words the parameter takes (1, or 2 for a block).
  public var callWords: Int { kind == .block ? 2 : 1 }
}

/// A validated interface descriptor.
public struct InterfaceDescriptor {
  /// The most bytes one block parameter may declare (1 MiB).
  public static let maximumBlockSize: UInt32 = 1 << 20
  /// The most call words (handle and selector excluded) a method may take.
  public static let maximumCallWords = 8
  /// The longest name.
  public static let maximumNameLength = 63

  /// The canonical bytes; equal bytes mean the same interface.
  public let bytes: UnsafeRawBufferPointer
  /// The interface's name.
  public let name: UnsafeBufferPointer<UInt8>
  /// The number of methods.
  public let methodCount: Int

  /// Validates `bytes` as exactly one descriptor.
  public init(bytes: UnsafeRawBufferPointer) throws(DescriptorError) {
    var cursor = DescriptorCursor(ByteReader(bytes))
    name = try cursor.name()
    methodCount = Int(widening: try cursor.byte())
    for method in 0..<methodCount { _ = try cursor.method(index: method) }
    guard cursor.offset == bytes.count else { throw .trailingBytes(offset: cursor.offset) }
    self.bytes = bytes
  }

  /// The method at `index` (below `methodCount`).
  public func method(_ index: Int) -> MethodDescriptor {
    var cursor = DescriptorCursor(ByteReader(bytes))
    _ = try! cursor.name()
    _ = try! cursor.byte()
    for current in 0..<index { _ = try! cursor.method(index: current) }
    return try! cursor.method(index: index)
  }

  /// A stable 32-bit digest of the descriptor (FNV-1a), used to tag calls with the
  /// interface the caller expects.
  public var digest: UInt32 {
    var hash: UInt32 = 2_166_136_261
    for byte in bytes { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
    return hash
  }

  /// Whether two descriptors describe the same interface.
  public func matches(_ other: InterfaceDescriptor) -> Bool { equal(bytes, other.bytes) }

  /// Compares `self` (what a server requires) with `provided`: nil if they match, else
  /// the index of the first method that differs (or `min(methodCount)` when one
  /// interface has more methods, or -1 when the names differ).
  public func firstDifference(from provided: InterfaceDescriptor) -> Int? {
    guard !matches(provided) else { return nil }
    guard equal(UnsafeRawBufferPointer(name), UnsafeRawBufferPointer(provided.name)) else { return -1 }
    for index in 0..<min(methodCount, provided.methodCount)
    where !equal(method(index).bytes, provided.method(index).bytes) {
      return index
    }
    return min(methodCount, provided.methodCount)
  }
}

/// Structural matching all the way down: an interface matches only if every interface
/// its methods name (as parameters or results, transitively) matches too, each side's
/// descriptor looked up in its own manifest (or the kernel's).
public enum InterfaceMatching {
  /// The most interfaces one comparison visits (a manifest describes at most 32).
  public static let maximumVisited = 64

  /// nil if `required` (looked up with `requiredLookup`) and `provided` (looked up with
  /// `providedLookup`) match with everything they reference; else the name of the first
  /// interface that differs or that the provider does not describe.
  public static func firstMismatch(
    required: InterfaceDescriptor, provided: InterfaceDescriptor,
    requiredLookup: (UnsafeBufferPointer<UInt8>) -> InterfaceDescriptor?,
    providedLookup: (UnsafeBufferPointer<UInt8>) -> InterfaceDescriptor?
  ) -> UnsafeBufferPointer<UInt8>? {
    guard required.matches(provided) else { return required.name }
    var visited: [UnsafeBufferPointer<UInt8>] = [required.name]
    var next = 0
    var queue: [InterfaceDescriptor] = [required]
    while next < queue.count {
      let interface = queue[next]
      next += 1
      for index in 0..<interface.methodCount {
        let method = interface.method(index)
        var names: [UnsafeBufferPointer<UInt8>] = []
        for parameter in method.parameters where parameter.kind == .reference {
          names.append(parameter.interfaceName!)
        }
        if let result = method.resultInterface { names.append(result) }
        for name in names
        where !visited.contains(where: { equal(UnsafeRawBufferPointer($0), UnsafeRawBufferPointer(name)) }) {
          guard visited.count < maximumVisited, let mine = requiredLookup(name),
            let theirs = providedLookup(name),
            mine.matches(theirs)
          else { return name }
          visited.append(name)
          queue.append(mine)
        }
      }
    }
    return nil
  }
}

/// One method of a validated descriptor.
public struct MethodDescriptor {
  /// The method's canonical bytes.
  public var bytes: UnsafeRawBufferPointer
  /// The method's name.
  public var name: UnsafeBufferPointer<UInt8>
  /// The parameters' canonical bytes (iterate with `parameters`).
  public var parameterCount: Int
  fileprivate var parameterBytes: UnsafeRawBufferPointer
  /// The result kind.
  public var result: ResultKind
  /// For reference results: the interface's name.
  public var resultInterface: UnsafeBufferPointer<UInt8>?
  /// For `filled`: the block parameter whose length is returned.
  public var filledParameter: Int
  /// Call words the parameters take.
  public var callWords: Int

  /// The parameters in order.
  public var parameters: ParameterSequence { ParameterSequence(bytes: parameterBytes, count: parameterCount) }

  /// Whether every parameter and the result are plain words (the fastest call path).
  public var isWordsOnly: Bool {
    for parameter in parameters where parameter.kind != .word { return false }
    return result == .none || result == .word
  }
}

/// The parameters of a method.
public struct ParameterSequence: Sequence {
  fileprivate let bytes: UnsafeRawBufferPointer
  fileprivate let count: Int

  /// Iterates parameters.
  public struct Iterator: IteratorProtocol {
    fileprivate var cursor: DescriptorCursor
    fileprivate var remaining: Int
    /// The next parameter.
    public mutating func next() -> ParameterDescriptor? {
      guard remaining > 0 else { return nil }
      remaining -= 1
      return try! cursor.parameter()
    }
  }

  /// An iterator.
  public func makeIterator() -> Iterator {
    Iterator(cursor: DescriptorCursor(ByteReader(bytes)), remaining: count)
  }
}

/// Reads descriptor fields with validation.
struct DescriptorCursor {
  let reader: ByteReader
  var offset = 0

  init(_ reader: ByteReader) { self.reader = reader }

  mutating func byte() throws(DescriptorError) -> UInt8 {
    guard let value = reader.uint8(at: offset) else { throw .truncated(offset: offset) }
    offset += 1
    return value
  }

  mutating func word() throws(DescriptorError) -> UInt32 {
    guard let value = reader.uint32(at: offset) else { throw .truncated(offset: offset) }
    offset += 4
    return value
  }

  mutating func name() throws(DescriptorError) -> UnsafeBufferPointer<UInt8> {
    let start = offset
    let length = Int(widening: try byte())
    guard length > 0, length <= InterfaceDescriptor.maximumNameLength else { throw .badName(offset: start) }
    guard let slice = reader.slice(offset: offset, length: length) else { throw .truncated(offset: offset) }
    let text = slice.bindMemory(to: UInt8.self)
    for (index, character) in text.enumerated() {
      let isLetter = (character | 0x20) >= UInt8(ascii: "a") && (character | 0x20) <= UInt8(ascii: "z")
      let isDigit = character >= UInt8(ascii: "0") && character <= UInt8(ascii: "9")
      guard isLetter || character == UInt8(ascii: "_") || (isDigit && index > 0) else {
        throw .badName(offset: start)
      }
    }
    offset += length
    return text
  }

  mutating func parameter() throws(DescriptorError) -> ParameterDescriptor {
    let kindOffset = offset
    guard let kind = ParameterKind(rawValue: try byte()) else { throw .badKind(offset: kindOffset) }
    var parameter = ParameterDescriptor(kind: kind, interfaceName: nil, direction: nil, maximumSize: 0)
    switch kind {
    case .word: break
    case .reference: parameter.interfaceName = try name()
    case .block:
      let directionOffset = offset
      guard let direction = BlockDirection(rawValue: try byte()) else {
        throw .badKind(offset: directionOffset)
      }
      let boundOffset = offset
      let maximum = try word()
      guard maximum > 0, maximum <= InterfaceDescriptor.maximumBlockSize else {
        throw .badBlockBound(offset: boundOffset)
      }
      parameter.direction = direction
      parameter.maximumSize = maximum
    }
    return parameter
  }

  mutating func method(index: Int) throws(DescriptorError) -> MethodDescriptor {
    let start = offset
    let methodName = try name()
    let parameterCount = Int(widening: try byte())
    let parametersStart = offset
    var callWords = 0
    var outputBlocks: UInt32 = 0
    for position in 0..<parameterCount {
      let parameter = try parameter()
      callWords += parameter.callWords
      if parameter.kind == .block, parameter.direction!.copiesOut, position < 32 {
        outputBlocks |= 1 << UInt32(position)
      }
    }
    guard callWords <= InterfaceDescriptor.maximumCallWords else { throw .tooManyArguments(method: index) }
    let parameterBytes = UnsafeRawBufferPointer(rebasing: reader.bytes[parametersStart..<offset])
    let resultOffset = offset
    guard let result = ResultKind(rawValue: try byte()) else { throw .badKind(offset: resultOffset) }
    var resultInterface: UnsafeBufferPointer<UInt8>?
    var filled = 0
    switch result {
    case .reference, .optionalReference: resultInterface = try name()
    case .filled:
      filled = Int(widening: try byte())
      guard filled < 32, outputBlocks & (1 << UInt32(filled)) != 0 else {
        throw .badFilledResult(method: index)
      }
    case .none, .word: break
    }
    return MethodDescriptor(
      bytes: UnsafeRawBufferPointer(rebasing: reader.bytes[start..<offset]), name: methodName,
      parameterCount: parameterCount, parameterBytes: parameterBytes, result: result,
      resultInterface: resultInterface, filledParameter: filled, callWords: callWords)
  }
}

/// Whether two byte ranges hold the same bytes.
public func equal(_ left: UnsafeRawBufferPointer, _ right: UnsafeRawBufferPointer) -> Bool {
  guard left.count == right.count else { return false }
  for index in 0..<left.count where left[index] != right[index] { return false }
  return true
}

/// Whether `bytes` spell exactly `text`.
public func equals(_ bytes: UnsafeBufferPointer<UInt8>, _ text: StaticString) -> Bool {
  equal(
    UnsafeRawBufferPointer(bytes),
    UnsafeRawBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
}
