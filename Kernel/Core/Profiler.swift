// Profiler: where the processor was at each timer tick, to find where a workload's
// instructions go. Under `-icount shift=0` a tick is a fixed number of guest
// instructions, so an address's share of the samples is its share of the instructions.
//
// Contract: off unless the kernel command line has `profile`; then `start` takes 256 KiB
// of kernel heap for 65,536 samples and every timer interrupt records the address it
// interrupted (a user-mode address is only counted: user address spaces overlap, so the
// address alone does not say which server). `report` writes the most frequent kernel-space
// addresses since the last report (kernel-mode servers included: their images sit at the
// addresses the load log names), then the callers of the three most frequent (from the
// frame pointer), and starts over. tools/profile turns them into functions.

import KernelCore

enum Profiler {
  static let capacity = 65_536
  /// Pairs: the interrupted address, and its function's return address (from its frame:
  /// where a leaf such as cpu_restore_flags was called from, which is where the cost of an
  /// interrupts-off section shows up).
  nonisolated(unsafe) private static var samples: UnsafeMutablePointer<UInt64>? = nil
  nonisolated(unsafe) private static var count = 0
  nonisolated(unsafe) private static var userSamples = 0
  nonisolated(unsafe) private static var dropped = 0

  /// Whether ticks are sampled (the interrupt path asks first: off, a tick costs nothing).
  static var isOn: Bool { samples != nil }

  /// Starts sampling if the command line asks for it.
  static func startIfAsked() {
    guard Boot.commandLine.value(of: "profile") != nil else { return }
    samples = UnsafeMutablePointer<UInt64>.allocate(capacity: capacity)
    Log.info("profile: sampling every timer tick (the shell's profile command reports)")
  }

  /// One timer tick interrupted `address` (in user mode if `user`) in a function called
  /// from `top` (0 if unknown); interrupts are off.
  static func record(address: UInt32, top: UInt32, user: Bool) {
    guard let samples else { return }
    if user {
      userSamples &+= 1
    } else if count < capacity {
      samples[count] = UInt64(address) << 32 | UInt64(top)
      count += 1
    } else {
      dropped &+= 1
    }
  }

  /// Writes "profile: N samples, U in user mode, D not kept" and then the most frequent
  /// addresses as "ADDRESS COUNT" lines (hex, decimal), as many as `lines`; starts over.
  /// Runs with interrupts off (the caller's), sorting at most 65,536 samples in place.
  static func report(_ out: inout TextWriter, lines: Int) {
    guard let samples else {
      out.line("profile: off (boot with `profile` on the kernel command line)")
      return
    }
    var taken = UnsafeMutableBufferPointer(start: samples, count: count)
    taken.sort()
    out.line(
      "profile: \(count + userSamples + dropped) samples, \(userSamples) in user mode, \(dropped) not kept")
    // The most frequent addresses, then where the three most frequent were called from.
    let top = mostFrequent(taken, lines: max(lines - 24, 1)) { $0 >> 32 }
    for entry in top { out.line("\(hex: UInt32(truncatingIfNeeded: entry.key), width: 8) \(entry.count)") }
    for entry in top.prefix(3) {
      let start = taken.firstIndex { $0 >> 32 == entry.key } ?? 0
      var callers = UnsafeMutableBufferPointer(rebasing: taken[start..<(start + entry.count)])
      callers.sort { UInt32(truncatingIfNeeded: $0) < UInt32(truncatingIfNeeded: $1) }
      for caller in mostFrequent(callers, lines: 7, { $0 & 0xFFFF_FFFF }) {
        out.line(
          "\(hex: UInt32(truncatingIfNeeded: entry.key), width: 8) from \(hex: UInt32(truncatingIfNeeded: caller.key), width: 8) \(caller.count)"
        )
      }
    }
    count = 0
    userSamples = 0
    dropped = 0
  }

  /// The `lines` most frequent keys among `samples`, which are sorted so that equal keys
  /// are next to each other; most frequent first.
  private static func mostFrequent(
    _ samples: UnsafeMutableBufferPointer<UInt64>, lines: Int, _ key: (UInt64) -> UInt64
  ) -> [(key: UInt64, count: Int)] {
    guard lines > 0 else { return [] }
    var top: [(key: UInt64, count: Int)] = []
    top.reserveCapacity(lines + 1)
    var index = 0
    while index < samples.count {
      var end = index + 1
      while end < samples.count && key(samples[end]) == key(samples[index]) { end += 1 }
      let run = (key: key(samples[index]), count: end - index)
      if top.count < lines || run.count > top[top.count - 1].count {
        let place = top.firstIndex { $0.count < run.count } ?? top.count
        top.insert(run, at: place)
        if top.count > lines { top.removeLast() }
      }
      index = end
    }
    return top
  }
}
