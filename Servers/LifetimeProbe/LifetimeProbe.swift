// LifetimeProbe: see LifetimeProbe.server. Each `@@LIFE` line ends with ok=true when the
// kernel did what its lifetime and locking rules say (docs/ARCHITECTURE.md, "Lifetimes on
// the call path").

import KernelCore
import ServerRuntime

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

func sleep(_ milliseconds: UInt) { try? Required.clock.sleep(milliseconds: milliseconds) }

/// Work for a thread of the probe: runs `body` once, keeps its result.
final class Task: RunnableImplementation {
  private let body: () -> UInt
  var result: UInt = 0
  var done = false

  init(_ body: @escaping () -> UInt) { self.body = body }

  func run() {
    result = body()
    done = true
  }

  /// Starts `body` on a new thread of normal priority; nil if none could be made.
  static func spawn(_ body: @escaping () -> UInt) -> Task? {
    let task = Task(body)
    guard let work = Runnable.export(task) else { return nil }
    defer { _ = work.release() }
    guard (try? Required.threads.spawn(work: work, priority: 2)) ?? 0 != 0 else { return nil }
    return task
  }

  /// Waits (up to two seconds) for the thread to finish; whether it did.
  func wait() -> Bool {
    for _ in 0..<200 where !done { sleep(10) }
    return done
  }
}

/// Waits (up to a second) until `victims` reports `count` destroys.
func waitForDestroys(_ victims: Victims, _ count: UInt) -> UInt {
  var seen: UInt = 0
  for _ in 0..<100 {
    seen = (try? victims.destroyed()) ?? 0
    if seen >= count { break }
    sleep(10)
  }
  return seen
}

final class Probe: ProgramImplementation {
  var failures = 0

  func check(_ line: KernelMessage, _ ok: Bool) {
    report("@@LIFE \(line) ok=\(ok)")
    if !ok { failures += 1 }
  }

  func run() -> UInt {
    releaseWhileInside()
    sleepingDestroy()
    lockCycle()
    report("@@LIFE done failures=\(failures)")
    return UInt(failures)
  }

  /// Another thread of this server is inside an object (sleeping in `hold`) when this one
  /// drops the object's last reference: the destroy must wait until that call returns.
  func releaseWhileInside() {
    let victims = Required.victims
    let before = (try? victims.destroyed()) ?? 0
    guard let object = try? victims.make(),
      let holder = Task.spawn({ (try? object.hold(milliseconds: 40)) ?? 2 })
    else { return check("inside setup=failed", false) }
    sleep(10)  // the holder is inside now
    let released = object.release()
    let finished = holder.wait()
    let destroyed = waitForDestroys(victims, before + 1) - before
    let inside = (try? victims.destroyedWhileInside()) ?? 99
    check(
      "inside released=\(released) finished=\(finished) hold=\(holder.result) destroyed=\(destroyed) destroyedWhileInside=\(inside)",
      released && finished && holder.result == 1 && destroyed == 1 && inside == 0)
  }

  /// The keeper holds the last reference to an object whose destroy sleeps until woken,
  /// and fails: the supervisor releases what it held, and must go on to restart it while
  /// the destroy sleeps (on the victim's own worker thread).
  func sleepingDestroy() {
    let victims = Required.victims
    var keeper = Required.keeper
    let before = (try? victims.destroyed()) ?? 0
    guard let sleepy = try? victims.makeSleepy(), (try? keeper.keep(object: sleepy)) != nil else {
      return check("sleepy setup=failed", false)
    }
    _ = sleepy.release()
    let crashed: Bool
    do throws(CallError) {
      try keeper.crash()
      crashed = false
    } catch {
      crashed = error == .serverUnavailable
    }
    var rebound = false
    for _ in 0..<100 where !rebound {
      if let handle = try? Required.supervision.rebind(reference: UInt(keeper.handle)), handle != 0 {
        _ = keeper.release()
        keeper = Keeper(handle: UInt32(handle))
        rebound = true
      } else {
        sleep(10)
      }
    }
    let answers = ((try? keeper.ping()) ?? 0) == 1
    let waiting = ((try? victims.destroyed()) ?? 0) - before  // its deinit has begun: 1
    try? victims.wake()
    let destroyed = waitForDestroys(victims, before + 1) - before
    // The victim answers while its worker's destroy waits, and after it.
    let victimAnswers = ((try? victims.ping()) ?? 0) == 1
    check(
      "sleepy crashed=\(crashed) rebound=\(rebound) keeperAnswers=\(answers) destroyBegun=\(waiting) destroyed=\(destroyed) victimAnswers=\(victimAnswers)",
      crashed && rebound && answers && destroyed == 1 && victimAnswers)
  }

  /// Two threads each spin inside one of two servers that are not thread-safe (holding
  /// its lock) and then call the other: the second wait would close a cycle and must be
  /// refused with wouldDeadlock (8); the other call then completes.
  func lockCycle() {
    let first = Required.victims
    let second = Required.victims2
    guard let one = Task.spawn({ (try? first.spinThenCall(milliseconds: 30, other: second)) ?? 99 }),
      let two = Task.spawn({ (try? second.spinThenCall(milliseconds: 30, other: first)) ?? 99 })
    else { return check("cycle setup=failed", false) }
    let finished = one.wait() && two.wait()
    let results = [one.result, two.result].sorted()
    check(
      "cycle finished=\(finished) first=\(one.result) second=\(two.result)",
      finished && results == [0, UInt(CallError.wouldDeadlock.status)])
  }
}

func start() -> Program {
  Program.export(Probe())!
}
