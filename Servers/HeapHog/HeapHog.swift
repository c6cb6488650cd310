// HeapHog: see HeapHog.server (systems/tests/workers.system).

import ServerRuntime

nonisolated(unsafe) var kept: [UnsafeMutableRawPointer] = []
final class Hog: NapperImplementation {
  func nap(milliseconds: UInt) -> UInt { 0 }
  func ping() -> UInt {
    kept.reserveCapacity(64)
    var mib: UInt = 0
    while kept.count < 64 {
      var pointer: UnsafeMutableRawPointer? = nil
      guard tesseraUserPosixMemalign(&pointer, 16, 1 << 20) == 0, let pointer else { break }
      kept.append(pointer)
      mib += 1
    }
    return mib
  }
}
func start() -> Napper {
  let hog = Hog()
  _ = hog.ping()
  return Napper.export(hog)!
}
