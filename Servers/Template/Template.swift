// Template: the smallest useful server. It implements Program (see Interfaces/), says
// hello through the console it was given, and returns 0.
//
// Generated for you (build/servers/Template/Interfaces.swift): the `Program` and
// `Console` and `Clock` reference types, the `ProgramImplementation` protocol,
// `Program.export`, and `Required.console` and `Required.clock`. You write the
// implementation class and `start()`.

import KernelCore
import ServerRuntime

final class Hello: ProgramImplementation {
  func run() -> UInt {
    let uptime = (try? Required.clock.uptimeMilliseconds()) ?? 0
    let message: KernelMessage = "hello from the template server, \(uptime) ms after boot"
    message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
    return 0
  }
}

/// Called once when the server is loaded, after its slots are bound; returns the object
/// that the composition's references to this server will point to.
func start() -> Program {
  Program.export(Hello())!
}
