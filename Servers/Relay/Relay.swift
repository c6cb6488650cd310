// Relay: see Relay.server.

import ServerRuntime

final class Forwarder: FragileImplementation {
  func compute(a: UInt, b: UInt, c: UInt) -> UInt { try! Required.target.compute(a: a, b: b, c: c) }
  func misbehave(kind: UInt, address: UInt) -> UInt {
    try! Required.target.misbehave(kind: kind, address: address)
  }
}

func start() -> Fragile {
  Fragile.export(Forwarder())!
}
