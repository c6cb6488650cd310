// BlockedReceiver: see BlockedReceiver.server.

import KernelCore
import ServerRuntime

/// The thread that waits in the driver: records how its receive ended.
final class Waiter: RunnableImplementation {
  let net: NetworkDevice
  let done: Semaphore
  var outcome: KernelMessage = "none"

  init(net: NetworkDevice, done: Semaphore) {
    self.net = net
    self.done = done
  }

  func run() {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1514, alignment: 4)
    defer { buffer.deallocate() }
    do throws(CallError) {
      let length = try net.receive(frame: buffer)
      outcome = "returned \(length)"
    } catch {
      outcome = "error \(error)"
    }
    _ = try? done.signal()
  }
}

final class Test: ProgramImplementation {
  func run() -> UInt {
    let net = Required.net
    guard let done = try? Required.sync.makeSemaphore(count: 0) else { return 1 }
    let waiter = Waiter(net: net, done: done)
    guard let work = Runnable.export(waiter), (try? Required.threads.spawn(work: work, priority: 2)) != nil
    else {
      return 1
    }
    _ = work.release()
    try? Required.clock.sleep(milliseconds: 100)  // the waiter is blocked in the driver now
    _ = try? net.fault()
    // The waiter comes back (up to 2 s), and the driver is restarted.
    var returned = false
    for _ in 0..<200 where !returned {
      try? Required.clock.sleep(milliseconds: 10)
      returned = waiter.outcome != "none"
    }
    var restarted = false
    for _ in 0..<200 where !restarted {
      if let handle = try? Required.supervision.rebind(reference: UInt(net.handle)), handle != 0 {
        restarted = true
        _ = NetworkDevice(handle: UInt32(handle)).release()
      } else {
        try? Required.clock.sleep(milliseconds: 10)
      }
    }
    let line: KernelMessage =
      "@@BLOCKED returned=\(returned) outcome=\(waiter.outcome) restarted=\(restarted)"
    line.withBytes { _ = try? Required.console.write(text: UnsafeRawBufferPointer($0)) }
    _ = done.release()
    return 0
  }
}

func start() -> Program {
  Program.export(Test())!
}
