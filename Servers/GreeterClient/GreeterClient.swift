// GreeterClient: the tutorial's client (docs/TUTORIAL.md). Its run() greets twice, asks
// the greeter to crash, prints the error its call got, and, if the composition restarts
// the greeter, switches to the new instance and greets again.

import KernelCore
import ServerRuntime

/// Writes one line on the console (the kernel prefixes it with this server's name).
func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

/// Greets `name` through `greeter`; the greeting, or what went wrong.
func greeting(_ greeter: Greeter, _ name: StaticString) -> KernelMessage {
  let text = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
  defer { text.deallocate() }
  do throws(CallError) {
    let length = try greeter.greet(
      name: UnsafeRawBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount), text: text)
    return "\(text: UnsafeBufferPointer(rebasing: text.assumingMemoryBound(to: UInt8.self)[0..<length]))"
  } catch {
    return "greet failed: \(error)"
  }
}

final class Client: ProgramImplementation {
  func run() -> UInt {
    var greeter = Required.greeter
    say(greeting(greeter, "world"))
    say(greeting(greeter, "Tessera"))
    say("greetings so far: \((try? greeter.count()) ?? 0)")
    do throws(CallError) {
      try greeter.crash()
      say("the greeter did not crash")
    } catch {
      say("crash: \(error)")
    }
    // A restarted greeter is a new instance; this reference still names the failed one.
    for _ in 0..<100 {
      let handle = (try? Required.supervision.rebind(reference: UInt(greeter.handle))) ?? 0
      if handle != 0 {
        _ = greeter.release()
        greeter = Greeter(handle: UInt32(handle))
        say("rebound to the restarted greeter")
        say(greeting(greeter, "again"))
        say("greetings so far: \((try? greeter.count()) ?? 0)")
        return 0
      }
      try? Required.clock.sleep(milliseconds: 10)
    }
    say("the greeter was not restarted")
    return 1
  }
}

func start() -> Program {
  Program.export(Client())!
}
