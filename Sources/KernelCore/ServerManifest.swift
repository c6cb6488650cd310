// ServerManifest: what a server file says about itself, in its `.tessera` ELF section.
//
// Contract: `ServerManifest(bytes:)` validates the whole manifest, including every
// interface descriptor and that every interface named anywhere (slots, exports, reference
// parameters and results) is described in the manifest itself, so a server file is
// self-contained. Encoding (little-endian):
//
//   manifest := "TSRV", u8 version (1), u8 nameLength, name, u8 flags (bit 0: thread-safe),
//               u8 interfaceCount, (u16 length, descriptor)*,
//               u8 providedInterface, u8 exportCount, u8 interfaceIndex*,
//               u8 slotCount, (u8 nameLength, name, u8 interfaceIndex)*
//
// `providedInterface` is the interface of the object `tessera_start` returns; exports are
// the interfaces whose methods the server implements (its dispatch functions are named
// `tessera_dispatch_<Interface>_<methodIndex>`); slots are the required interfaces, bound
// at load in this order to handles 1, 2, ...

/// Why a manifest was rejected.
public enum ManifestError: Error, Equatable, Sendable {
  /// The section does not start with "TSRV" version 1.
  case badMagic
  /// A field is malformed; `offset` locates it.
  case malformed(offset: Int)
  /// Interface `index` has a bad descriptor.
  case badInterface(index: Int, DescriptorError)
  /// An interface index points past the interface list.
  case badInterfaceIndex(offset: Int)
  /// An interface is named but not described in the manifest.
  case undescribedInterface(interface: Int, method: Int)
  /// Two interfaces in the manifest have the same name.
  case duplicateInterface(index: Int)
  /// The provided interface is not among the exported ones.
  case providedNotExported

  /// A one-line explanation.
  public var message: KernelMessage {
    switch self {
    case .badMagic: "manifest does not start with TSRV version 1"
    case .malformed(let offset): "manifest malformed at offset \(offset)"
    case .badInterface(let index, let error): "interface \(index): \(error.message)"
    case .badInterfaceIndex(let offset): "interface index out of range at offset \(offset)"
    case .undescribedInterface(let interface, let method):
      "interface \(interface) method \(method) names an interface the manifest does not describe"
    case .duplicateInterface(let index): "interface \(index) is described twice"
    case .providedNotExported: "the provided interface is not exported"
    }
  }
}

/// A validated server manifest.
public struct ServerManifest {
  /// The longest manifest accepted.
  public static let maximumSize = 64 * 1024
  /// The most interfaces one manifest may describe.
  public static let maximumInterfaces = 32

  /// The server's name.
  public let name: UnsafeBufferPointer<UInt8>
  /// Whether the kernel may let several threads into the server at once.
  public let isThreadSafe: Bool
  /// The number of interfaces described.
  public let interfaceCount: Int
  /// The index of the interface of the server's main object.
  public let providedInterface: Int
  /// The number of exported interfaces.
  public let exportCount: Int
  /// The number of required slots.
  public let slotCount: Int

  private let reader: ByteReader
  private let interfacesOffset: Int
  private let exportsOffset: Int
  private let slotsOffset: Int

  /// Validates `bytes` as a manifest.
  public init(bytes: UnsafeRawBufferPointer) throws(ManifestError) {
    let reader = ByteReader(bytes)
    guard bytes.count <= Self.maximumSize, reader.uint32(at: 0) == 0x5652_5354, reader.uint8(at: 4) == 1
    else {
      throw .badMagic
    }
    var cursor = DescriptorCursor(reader)
    cursor.offset = 5
    func fail(_ offset: Int) -> ManifestError { .malformed(offset: offset) }
    do throws(DescriptorError) {
      name = try cursor.name()
      isThreadSafe = try cursor.byte() & 1 != 0
    } catch { throw fail(cursor.offset) }
    guard let count = try? cursor.byte(), Int(widening: count) <= Self.maximumInterfaces else {
      throw fail(cursor.offset)
    }
    interfaceCount = Int(widening: count)
    interfacesOffset = cursor.offset
    for index in 0..<interfaceCount {
      guard let length = reader.uint16(at: cursor.offset),
        let slice = reader.slice(offset: cursor.offset + 2, length: Int(widening: length))
      else { throw fail(cursor.offset) }
      do throws(DescriptorError) {
        _ = try InterfaceDescriptor(bytes: slice)
      } catch { throw .badInterface(index: index, error) }
      cursor.offset += 2 + Int(widening: length)
    }
    let interfaceLimit = interfaceCount
    func interfaceIndex(_ cursor: inout DescriptorCursor) throws(ManifestError) -> Int {
      let offset = cursor.offset
      guard let value = try? cursor.byte() else { throw .malformed(offset: offset) }
      guard Int(widening: value) < interfaceLimit else { throw .badInterfaceIndex(offset: offset) }
      return Int(widening: value)
    }
    let provided = try interfaceIndex(&cursor)
    guard let exports = try? cursor.byte() else { throw fail(cursor.offset) }
    let exportsStart = cursor.offset
    var providedIsExported = false
    var exported: UInt64 = 0  // each interface once: the kernel generates code per exported method
    for _ in 0..<Int(widening: exports) {
      let offset = cursor.offset
      let index = try interfaceIndex(&cursor)
      let bit: UInt64 = 1 << UInt64(truncatingIfNeeded: index)  // index < 32 interfaces
      guard exported & bit == 0 else { throw .malformed(offset: offset) }
      exported |= bit
      if index == provided { providedIsExported = true }
    }
    guard let slots = try? cursor.byte() else { throw fail(cursor.offset) }
    let slotsStart = cursor.offset
    for _ in 0..<Int(widening: slots) {
      guard (try? cursor.name()) != nil else { throw fail(cursor.offset) }
      _ = try interfaceIndex(&cursor)
    }
    guard cursor.offset == bytes.count else { throw fail(cursor.offset) }
    providedInterface = provided
    exportCount = Int(widening: exports)
    exportsOffset = exportsStart
    slotCount = Int(widening: slots)
    slotsOffset = slotsStart
    self.reader = reader
    guard providedIsExported else { throw .providedNotExported }
    // Self-containedness: every referenced interface name is described here, once.
    for index in 0..<interfaceCount {
      let descriptor = interface(index)
      for other in 0..<index
      where equal(UnsafeRawBufferPointer(interface(other).name), UnsafeRawBufferPointer(descriptor.name)) {
        throw .duplicateInterface(index: index)
      }
      for methodIndex in 0..<descriptor.methodCount {
        let method = descriptor.method(methodIndex)
        for parameter in method.parameters where parameter.kind == .reference {
          guard self.interfaceIndex(named: parameter.interfaceName!) != nil else {
            throw .undescribedInterface(interface: index, method: methodIndex)
          }
        }
        if let result = method.resultInterface, self.interfaceIndex(named: result) == nil {
          throw .undescribedInterface(interface: index, method: methodIndex)
        }
      }
    }
  }

  /// The descriptor of interface `index`.
  public func interface(_ index: Int) -> InterfaceDescriptor {
    var offset = interfacesOffset
    for _ in 0..<index { offset += 2 + Int(widening: reader.uint16(at: offset)!) }
    let length = Int(widening: reader.uint16(at: offset)!)
    return try! InterfaceDescriptor(bytes: reader.slice(offset: offset + 2, length: length)!)
  }

  /// The index of the interface called `name`, if described.
  public func interfaceIndex(named name: UnsafeBufferPointer<UInt8>) -> Int? {
    for index in 0..<interfaceCount
    where equal(UnsafeRawBufferPointer(interface(index).name), UnsafeRawBufferPointer(name)) {
      return index
    }
    return nil
  }

  /// The interface index of export `number`.
  public func export(_ number: Int) -> Int { Int(widening: reader.uint8(at: exportsOffset + number)!) }

  /// The name and interface index of required slot `number`.
  public func slot(_ number: Int) -> (name: UnsafeBufferPointer<UInt8>, interface: Int) {
    var cursor = DescriptorCursor(reader)
    cursor.offset = slotsOffset
    for _ in 0..<number {
      _ = try! cursor.name()
      _ = try! cursor.byte()
    }
    let name = try! cursor.name()
    return (name, Int(widening: try! cursor.byte()))
  }
}
