// Greeter: the tutorial's server (docs/TUTORIAL.md). Implements Greeter: `greet` writes
// "Hello, NAME!" into the caller's block, `count` says how many it wrote, `crash` stops
// with an index out of range, which the kernel contains.

import ServerRuntime

final class FriendlyGreeter: GreeterImplementation {
  private var greetings: UInt = 0

  func greet(name: UnsafeRawBufferPointer, text: UnsafeMutableRawBufferPointer) -> Int {
    greetings += 1
    var length = 0
    func add(_ bytes: UnsafeRawBufferPointer) {
      for byte in bytes where length < text.count {
        text[length] = byte
        length += 1
      }
    }
    let hello: StaticString = "Hello, "
    add(UnsafeRawBufferPointer(start: hello.utf8Start, count: hello.utf8CodeUnitCount))
    add(name)
    add(UnsafeRawBufferPointer(start: UnsafeRawPointer(("!" as StaticString).utf8Start), count: 1))
    return length
  }

  func count() -> UInt { greetings }

  func crash() {
    let empty: [UInt] = []
    greetings = empty[Int(greetings)]  // index out of range: a Swift runtime trap
  }
}

/// Called once when the server is loaded; returns its main object.
func start() -> Greeter {
  Greeter.export(FriendlyGreeter())!
}
