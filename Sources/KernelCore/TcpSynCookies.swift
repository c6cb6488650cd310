// TcpSynCookies: SYN-ACKs that keep no state (SYN cookies, RFC 4987 3.6), for a listener
// whose table of handshakes in progress is full: the SYN-ACK's sequence number encodes a
// keyed hash of the connection's addresses, ports and the peer's initial sequence number,
// a coarse time and the peer's segment size, so that the ACK completing the handshake can
// be checked and the connection made then. A SYN flood then costs no memory at all, and
// a real peer's handshake completes however many SYNs arrive with it.
//
// Contract: `make` and `check` agree for 64 to 128 s (the counter changes every 64 s; the
// previous one is accepted too). The hash is a keyed 64-bit mix (splitmix64's finalizer),
// not a cryptographic one: 29 of the 32 bits are hash, so a blind guess succeeds once in
// 2^29 tries. Only four segment sizes can be told apart (536, 1220, 1440, 1460); a peer's
// window scaling and SACK cannot (this TCP uses neither).

/// Makes and checks SYN cookies with one secret.
public struct TcpSynCookies {
  /// The segment sizes a cookie can carry, smallest first.
  public static let segmentSizes: [UInt16] = [536, 1220, 1440, 1460]
  /// Milliseconds a counter value lasts.
  public static let period: UInt64 = 64_000

  private let secret: UInt64

  /// Cookies keyed with `secret` (random, from the caller; never 0 in practice).
  public init(secret: UInt64) { self.secret = secret }

  /// The sequence number for the SYN-ACK answering a SYN with `peerSequence` and segment
  /// size `maximumSegment` (nil: 536) from `remote`:`remotePort` to `local`:`localPort`.
  public func make(
    local: IPv4Address, localPort: UInt16, remote: IPv4Address, remotePort: UInt16,
    peerSequence: SequenceNumber,
    maximumSegment: UInt16?, now: UInt64
  ) -> SequenceNumber {
    let size = maximumSegment ?? 536
    let index = Self.segmentSizes.lastIndex { $0 <= size } ?? 0
    return cookie(
      local: local, localPort: localPort, remote: remote, remotePort: remotePort, peerSequence: peerSequence,
      counter: UInt32(truncatingIfNeeded: now / Self.period), sizeIndex: UInt32(index))
  }

  /// The peer's segment size if `acknowledgment` (of an ACK with sequence number
  /// `sequence`) acknowledges a cookie this made within the last 64 to 128 s; else nil.
  public func check(
    local: IPv4Address, localPort: UInt16, remote: IPv4Address, remotePort: UInt16, sequence: SequenceNumber,
    acknowledgment: SequenceNumber, now: UInt64
  ) -> UInt16? {
    let value = (acknowledgment + UInt32.max).value  // the cookie is one less
    let sizeIndex = value & 3
    let counter = UInt32(truncatingIfNeeded: now / Self.period)
    // The counter's lowest bit is in the cookie: this period's or the last one's.
    let made = (value >> 2) & 1 == counter & 1 ? counter : counter &- 1
    let expected = cookie(
      local: local, localPort: localPort, remote: remote, remotePort: remotePort,
      peerSequence: sequence + UInt32.max, counter: made, sizeIndex: sizeIndex)
    return expected.value == value ? Self.segmentSizes[Int(sizeIndex)] : nil
  }

  private func cookie(
    local: IPv4Address, localPort: UInt16, remote: IPv4Address, remotePort: UInt16,
    peerSequence: SequenceNumber,
    counter: UInt32, sizeIndex: UInt32
  ) -> SequenceNumber {
    var hash = mix(secret ^ (UInt64(local.value) << 32 | UInt64(remote.value)))
    hash = mix(hash ^ (UInt64(localPort) << 48 | UInt64(remotePort) << 32 | UInt64(peerSequence.value)))
    hash = mix(hash ^ UInt64(counter))
    return SequenceNumber(UInt32(truncatingIfNeeded: hash) & ~7 | (counter & 1) << 2 | sizeIndex)
  }

  private func mix(_ value: UInt64) -> UInt64 {
    var mixed = value &+ 0x9E37_79B9_7F4A_7C15
    mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
    mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
    return mixed ^ (mixed >> 31)
  }
}
