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
    var total = UInt64(initial)
    var index = 0
    while index + 1 < bytes.count {
      total += UInt64(bytes[index]) << 8 | UInt64(bytes[index + 1])
      index += 2
    }
    if index < bytes.count { total += UInt64(bytes[index]) << 8 }
    while total > 0xFFFF { total = (total & 0xFFFF) + (total >> 16) }
    return UInt16(total)
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
