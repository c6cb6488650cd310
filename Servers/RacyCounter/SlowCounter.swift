// SlowCounter: a counter with no locking of its own. Its increment reads, dawdles and
// writes, so that a thread switch in between loses an update unless the kernel keeps
// other threads out (Servers/Counter is not thread-safe; Servers/RacyCounter shares this
// file but is declared thread-safe, wrongly, to show that the test can fail).

import ServerRuntime
import _Volatile

final class SlowCounter: CounterImplementation {
  private var count: UInt = 0
  private var inside: UInt = 0
  private var most: UInt = 0
  private let scratch = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)

  func increment() {
    // Wrapping arithmetic: in the racy variant these updates race too, and a lost one
    // must not trap.
    inside &+= 1
    most = max(most, inside)
    let seen = count
    // About 6,000 instructions: the timer often preempts a thread in here.
    let delay = VolatileMappedRegister<UInt32>(unsafeBitPattern: UInt(bitPattern: scratch))
    for step in 0..<2000 { delay.store(UInt32(step)) }
    count = seen &+ 1
    inside &-= 1
  }

  func value() -> UInt { count }

  func mostInside() -> UInt { most }
}

func start() -> Counter {
  Counter.export(SlowCounter())!
}
