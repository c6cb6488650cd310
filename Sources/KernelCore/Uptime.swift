// Uptime: the kernel's 32-bit millisecond uptime (Clock.uptimeMilliseconds wraps after
// 49.7 days) extended to 64 bits, for state machines that assume a clock that never goes
// back (ArpCache, IPv4Reassembly, DhcpClient).
//
// Contract: `extend` must see every reading at least once per 24 days (the layers read
// the clock every second or more often). A reading far below the last one (by more than
// half the range) is the wrap; one far above it is a late reading from before the wrap
// (a thread that read the clock, was preempted, and extends it after another thread saw
// the wrap) and keeps its own epoch. Callers serialize calls (a server's mutex).

/// A 32-bit millisecond clock extended to 64 bits.
public struct Uptime {
  private var last: UInt32 = 0
  private var epoch: UInt64 = 0

  /// A clock that has seen no reading yet.
  public init() {}

  /// `reading` (milliseconds, wrapping at 2^32) as a 64-bit count that never wraps.
  public mutating func extend(_ reading: UInt32) -> UInt64 {
    let half: UInt32 = 1 << 31
    if reading < last && last - reading > half {
      epoch += 1
      last = reading
    } else if reading > last && reading - last > half {
      // A reading from the previous epoch, arriving late.
      return epoch == 0 ? UInt64(reading) : (epoch - 1) << 32 | UInt64(reading)
    } else if reading > last {
      last = reading
    }
    return epoch << 32 | UInt64(reading)
  }
}
