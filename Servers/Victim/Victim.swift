// Victim: see Victim.server. Counts its objects' destroys, and those that came while a
// thread was inside the object (a destroy the kernel ran beside a method).

import ServerRuntime

/// Destroys so far, and destroys while a thread was inside.
nonisolated(unsafe) var destroyedCount: UInt = 0
nonisolated(unsafe) var destroyedInsideCount: UInt = 0
/// What sleepy objects' destroys wait on (made on first use).
nonisolated(unsafe) var wakeUp: Semaphore? = nil

/// An object a thread can stay inside. Its state is checked when it goes: a destroy that
/// runs while `inside` is nonzero is one the kernel should have held back.
final class Held: HoldableImplementation {
  private var inside: UInt = 0
  private let sleepy: Bool

  init(sleepy: Bool) { self.sleepy = sleepy }

  func hold(milliseconds: UInt) -> UInt {
    inside += 1
    let before = destroyedInsideCount
    try? Required.clock.sleep(milliseconds: milliseconds)
    inside -= 1
    return destroyedInsideCount == before ? 1 : 0
  }

  deinit {
    destroyedCount += 1
    if inside > 0 { destroyedInsideCount += 1 }
    // A sleepy object's destroy blocks until `wake`: on the kernel's supervisor thread
    // this would hold up every restart.
    if sleepy, let wakeUp { try? wakeUp.wait() }
  }
}

final class Factory: VictimsImplementation {
  func make() -> Holdable? { Holdable.export(Held(sleepy: false)) }

  func makeSleepy() -> Holdable? {
    if wakeUp == nil { wakeUp = try? Required.sync.makeSemaphore(count: 0) }
    return Holdable.export(Held(sleepy: true))
  }

  func wake() { try? wakeUp?.signal() }

  func destroyed() -> UInt { destroyedCount }

  func destroyedWhileInside() -> UInt { destroyedInsideCount }

  func spinThenCall(milliseconds: UInt, other: Victims) -> UInt {
    let end = ((try? Required.clock.uptimeMilliseconds()) ?? 0) + milliseconds
    while ((try? Required.clock.uptimeMilliseconds()) ?? end) < end {}
    do throws(CallError) {
      _ = try other.ping()
      return 0
    } catch {
      return UInt(error.status)
    }
  }

  func ping() -> UInt { 1 }
}

func start() -> Victims {
  Victims.export(Factory())!
}
