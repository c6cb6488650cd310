// InternetChecksum: the ones'-complement checksum of RFC 1071, and filling in the
// checksums of an Ethernet frame carrying IPv4 the way a card with checksum offload does.
//
// Contract: `fill(frame:)` touches only an Ethernet II frame of type IPv4 (version 4, a
// header of 20 to 60 bytes within the frame, a total length within the frame): it sets
// the IPv4 header checksum and, for an unfragmented TCP or UDP packet, the transport
// checksum over the pseudo-header (a UDP checksum of 0 is sent as 0xFFFF, RFC 768). Any
// other frame is left as it is. Offsets are those of RFC 791, 768 and 9293.

/// The Internet checksum (RFC 1071).
public enum InternetChecksum {
  /// The ones'-complement sum of `bytes` as big-endian 16-bit words (an odd last byte is
  /// padded with zero), added to `initial`, folded to 16 bits; not inverted.
  public static func sum(_ bytes: UnsafeRawBufferPointer, initial: UInt32 = 0) -> UInt16 {
    // Summed as little-endian 32-bit words, 16 bytes a round: a ones' complement sum of
    // byte-swapped words is the byte-swapped sum (RFC 1071 2(B)), so one swap at the end
    // gives the big-endian sum. Two bytes at a time cost most of TCP's time per byte.
    var total: UInt64 = 0
    let count = bytes.count
    var index = 0
    if let base = bytes.baseAddress {
      while index + 16 <= count {
        total &+=
          UInt64(base.loadUnaligned(fromByteOffset: index, as: UInt32.self))
          &+ UInt64(base.loadUnaligned(fromByteOffset: index + 4, as: UInt32.self))
          &+ UInt64(base.loadUnaligned(fromByteOffset: index + 8, as: UInt32.self))
          &+ UInt64(base.loadUnaligned(fromByteOffset: index + 12, as: UInt32.self))
        index += 16
      }
      while index + 4 <= count {
        total &+= UInt64(base.loadUnaligned(fromByteOffset: index, as: UInt32.self))
        index += 4
      }
      if index + 2 <= count {
        total &+= UInt64(base.loadUnaligned(fromByteOffset: index, as: UInt16.self))
        index += 2
      }
      // A last odd byte is the high byte of a big-endian word: the low byte swapped.
      if index < count { total &+= UInt64(base.load(fromByteOffset: index, as: UInt8.self)) }
    }
    let swapped = UInt64(fold(total).byteSwapped)
    return fold(swapped &+ UInt64(initial))
  }

  /// `total` folded to 16 bits with end-around carries.
  private static func fold(_ total: UInt64) -> UInt16 {
    var folded = total
    while folded > 0xFFFF { folded = (folded & 0xFFFF) &+ (folded >> 16) }
    return UInt16(folded)
  }

  /// Fills in the IPv4 header checksum and the TCP or UDP checksum of `frame` (see the
  /// file's contract); whether it was an IPv4 frame it could fill.
  @discardableResult
  public static func fill(frame: UnsafeMutableRawBufferPointer) -> Bool {
    let ip = 14
    guard frame.count >= ip + 20, frame[12] == 0x08, frame[13] == 0x00, frame[ip] >> 4 == 4 else {
      return false
    }
    let headerLength = Int(frame[ip] & 0x0F) * 4
    let totalLength = Int(frame[ip + 2]) << 8 | Int(frame[ip + 3])
    guard headerLength >= 20, totalLength >= headerLength, ip + totalLength <= frame.count else {
      return false
    }
    frame[ip + 10] = 0
    frame[ip + 11] = 0
    store(~sum(UnsafeRawBufferPointer(rebasing: frame[ip..<(ip + headerLength)])), at: ip + 10, in: frame)
    // A fragment's checksum covers the whole datagram, which this frame does not hold.
    let fragment = (Int(frame[ip + 6]) << 8 | Int(frame[ip + 7])) & 0x3FFF
    let protocolNumber = frame[ip + 9]
    let transport = ip + headerLength
    let transportLength = totalLength - headerLength
    let checksumOffset: Int
    switch protocolNumber {
    case 6 where transportLength >= 20: checksumOffset = 16
    case 17 where transportLength >= 8: checksumOffset = 6
    default: return true
    }
    guard fragment == 0 else { return true }
    frame[transport + checksumOffset] = 0
    frame[transport + checksumOffset + 1] = 0
    let pseudoHeader =
      UInt32(sum(UnsafeRawBufferPointer(rebasing: frame[(ip + 12)..<(ip + 20)]))) + UInt32(protocolNumber)
      + UInt32(transportLength)
    var checksum = ~sum(
      UnsafeRawBufferPointer(rebasing: frame[transport..<(transport + transportLength)]),
      initial: pseudoHeader)
    if protocolNumber == 17 && checksum == 0 { checksum = 0xFFFF }
    store(checksum, at: transport + checksumOffset, in: frame)
    return true
  }

}

/// Writes `value` big-endian (network order) at `offset` of `buffer`: the one way the
/// protocol files store 16-bit fields.
public func store(_ value: UInt16, at offset: Int, in buffer: UnsafeMutableRawBufferPointer) {
  buffer[offset] = UInt8(value >> 8)
  buffer[offset + 1] = UInt8(truncatingIfNeeded: value)
}
