// RandomNumbers: unpredictable-enough numbers for protocol fields an off-path attacker
// must not guess (DNS identifiers and source ports, RFC 5452; DHCP transaction numbers;
// ephemeral ports, RFC 6056): xorshift64* stirred with the caller's entropy on every draw.
//
// Contract: `next(stirring:)` mixes the given word (a time-stamp counter reading: the
// cycles between two draws vary with everything the machine did) into the state before
// each draw, so the sequence cannot be replayed from earlier outputs alone. Not
// cryptographic: under `-icount` the time-stamp counter is exact and repeatable, and a
// party that sees the counter can predict it.

/// A stirred xorshift64* generator.
public struct RandomNumbers {
  private var state: UInt64

  /// A generator seeded with `seed` (never left at zero).
  public init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }

  /// The next 64 bits, with `entropy` mixed in first.
  public mutating func next(stirring entropy: UInt64) -> UInt64 {
    state ^= entropy &* 0x9E37_79B9_7F4A_7C15
    if state == 0 { state = 0x9E37_79B9_7F4A_7C15 }
    state ^= state >> 12
    state ^= state << 25
    state ^= state >> 27
    return state &* 0x2545_F491_4F6C_DD1D
  }
}
