// Sequence: see Sequence.server. A program whose call fails counts as status 1.

import ServerRuntime

final class Both: ProgramImplementation {
  func run() -> UInt {
    let first = (try? Required.first.run()) ?? 1
    guard first == 0 else { return first }
    return (try? Required.second.run()) ?? 1
  }
}

func start() -> Program { Program.export(Both())! }
