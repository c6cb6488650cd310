// PacketAreas: where the network layers' packets lie, as one layer sees them: the link's
// receive buffers (area 0), the IPv4 reassembly buffer (area 1), both mapped read-only,
// and the link's send buffers, mapped writable (docs/ARCHITECTURE.md, "The network
// stack"). The layout constants of those buffers live here, once.
//
// Contract: `view` returns bytes only inside the named area: offsets and lengths come
// from other servers and are checked without arithmetic that could wrap; a bad word gets
// nil, never a read outside. `sendBuffer` is nil for a number outside 1...sendBufferCount.

/// The mapped packet areas of one network server.
public struct PacketAreas {
  /// Bytes per link buffer (receive and send).
  public static let bufferSize = 2048
  /// The link's receive buffers.
  public static let receiveBufferCount = 64
  /// The link's send buffers (numbered 1 to 16).
  public static let sendBufferCount = 16
  /// Bytes of the reassembly buffer (a 64 KiB datagram and its header, rounded to pages).
  public static let reassemblySize = 68 * 1024
  /// Where a send buffer's IPv4 header starts (after the Ethernet header).
  public static let ipv4HeaderOffset = 14
  /// Where the payload of an IPv4 datagram without options starts in a send buffer.
  public static let ipv4PayloadOffset = 34
  /// Where the payload of a UDP datagram starts in a send buffer.
  public static let udpPayloadOffset = 42

  private let receive: UnsafeRawPointer?
  private let reassembly: UnsafeRawPointer?
  private let send: UnsafeMutableRawPointer?

  /// The areas at these mapped addresses (0: not mapped by this server).
  public init(receive: UInt, reassembly: UInt, send: UInt) {
    self.receive = UnsafeRawPointer(bitPattern: receive)
    self.reassembly = UnsafeRawPointer(bitPattern: reassembly)
    self.send = UnsafeMutableRawPointer(bitPattern: send)
  }

  /// `length` bytes at `offset` of `area` (0 receive buffers, 1 reassembly buffer), or nil
  /// if they are not all inside it.
  public func view(area: UInt, offset: UInt, length: UInt) -> UnsafeRawBufferPointer? {
    let base: UnsafeRawPointer?
    let size: UInt
    switch area {
    case 0: (base, size) = (receive, UInt(Self.receiveBufferCount * Self.bufferSize))
    case 1: (base, size) = (reassembly, UInt(Self.reassemblySize))
    default: return nil
    }
    guard let base, offset <= size, length <= size - offset else { return nil }
    return UnsafeRawBufferPointer(start: base + Int(offset), count: Int(length))
  }

  /// Send buffer `number` (1 to 16) from byte `offset` to its end, or nil.
  public func sendBuffer(_ number: UInt, from offset: Int) -> UnsafeMutableRawBufferPointer? {
    guard let send, number >= 1, number <= UInt(Self.sendBufferCount), offset >= 0, offset <= Self.bufferSize
    else { return nil }
    return UnsafeMutableRawBufferPointer(
      start: send + (Int(number) - 1) * Self.bufferSize + offset, count: Self.bufferSize - offset)
  }
}
