// Keeper: see Keeper.server.

import ServerRuntime

final class Holder: KeeperImplementation {
  private var kept: [Holdable] = []

  func keep(object: Holdable) {
    // The argument is lent for the call: a count of its own keeps it.
    if (try? object.acquire()) != nil { kept.append(object) }
  }

  func crash() {
    let wild = UnsafeMutablePointer<UInt>(bitPattern: UInt(0xDEAD_0000) &+ UInt(kept.count))!
    wild.pointee = 1  // page fault: nothing is mapped there
  }

  func ping() -> UInt { 1 }
}

func start() -> Keeper {
  Keeper.export(Holder())!
}
