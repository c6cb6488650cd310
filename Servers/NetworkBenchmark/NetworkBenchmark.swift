// NetworkBenchmark: see NetworkBenchmark.server. Under `make bench` (-icount shift=0)
// time-stamp-counter deltas are guest instructions.
//
// Contract: each figure is the instructions of `frames` rounds divided by `frames`,
// interrupts and the driver's work included, after a warm-up. `net_send_SIZE_LABEL` is
// one `send` of a frame the card drops on receipt (another station's address);
// `net_receive_SIZE_LABEL` is one `send` to itself and the `receive` that returns it, less
// the send figure; `net_receive_shared_SIZE_LABEL` the same with the frame left in the
// driver's receive slot (through a FramePort, mapped here) instead of copied out. A send that is refused or a frame that comes back wrong stops the
// benchmark with a `@@BENCH failed` line, which `tessera bench-report` rejects.

import KernelCore
import ServerRuntime
import TesseraABI

/// Frames per measured loop.
let frames: UInt64 = 2_000

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

final class Runner: ProgramImplementation {
  let net = Required.net

  func run() -> UInt {
    var label = KernelMessage()
    setting("label") { name, value throws(CallError) in try Required.settings.value(name: name, value: value)
    }
    .withUnsafeBufferPointer { label.append(text: $0) }
    var mac = [UInt8](repeating: 0, count: 6)
    _ = mac.withUnsafeMutableBytes { try? net.macAddress(address: $0) }
    let received = UnsafeMutableRawBufferPointer.allocate(byteCount: 1514, alignment: 4)
    defer { received.deallocate() }
    for size in [60, 1514] {
      let other = frame(to: [0x02, 0, 0, 0, 0, 0x99], from: mac, size: size)
      let own = frame(to: mac, from: mac, size: size)
      // Warm up: every path has run once, the queue's storage is grown.
      guard sendAll(other, count: 100) != nil, echoAll(own, received, count: 100) != nil,
        let send = sendAll(other, count: frames), let both = echoAll(own, received, count: frames)
      else {
        say("@@BENCH failed net_\(size)_\(label): a send was refused or a frame came back wrong")
        return 1
      }
      report("net_send_\(size)_\(label)", send)
      report("net_receive_\(size)_\(label)", both &- send)
      guard let slots = receiveSlots, echoShared(own, slots, count: 100) != nil,
        let shared = echoShared(own, slots, count: frames)
      else {
        say(
          "@@BENCH failed net_receive_shared_\(size)_\(label): a send was refused or a frame came back wrong")
        return 1
      }
      report("net_receive_shared_\(size)_\(label)", shared &- send)
    }
    return 0
  }

  /// A port of the driver's.
  private lazy var port: FramePort? = (try? net.openPort()) ?? nil

  /// The driver's receive slots, mapped here (read-only).
  private lazy var receiveSlots: UnsafeRawPointer? = {
    guard let memory = (try? port?.receiveSlots()) ?? nil,
      let address = try? Required.memory.map(memory: memory, writable: 0), address != 0
    else { return nil }
    _ = memory.release()  // the mapping holds it
    return UnsafeRawPointer(bitPattern: address)
  }()

  /// As `echoAll`, the frame received in a slot of the driver's (through the port) and
  /// checked there, then given back.
  private func echoShared(_ frame: [UInt8], _ slots: UnsafeRawPointer, count: UInt64) -> UInt64? {
    frame.withUnsafeBytes { bytes in
      let start = tessera_timestamp()
      for _ in 0..<count {
        guard (try? net.send(frame: bytes)) == 1, let port, let word = try? port.receive() else { return nil }
        let slot = Int(word >> 16)
        let length = Int(word & 0xFFFF)
        guard slot < 64, length == bytes.count,
          slots.load(fromByteOffset: slot * 2048 + length - 1, as: UInt8.self) == bytes[length - 1],
          (try? port.release(slot: UInt(slot))) == 1
        else { return nil }
      }
      return tessera_timestamp() &- start
    }
  }

  private func frame(to destination: [UInt8], from source: [UInt8], size: Int) -> [UInt8] {
    var bytes = destination + source + [0x88, 0xB5]
    while bytes.count < size { bytes.append(UInt8(truncatingIfNeeded: bytes.count)) }
    return bytes
  }

  /// Instructions `count` sends of `frame` took; nil if one was refused.
  private func sendAll(_ frame: [UInt8], count: UInt64) -> UInt64? {
    frame.withUnsafeBytes { bytes in
      let start = tessera_timestamp()
      for _ in 0..<count {
        guard (try? net.send(frame: bytes)) == 1 else { return nil }
      }
      return tessera_timestamp() &- start
    }
  }

  /// Instructions `count` rounds of sending `frame` to itself and receiving it took; nil if
  /// a send was refused or what came back differs.
  private func echoAll(_ frame: [UInt8], _ received: UnsafeMutableRawBufferPointer, count: UInt64) -> UInt64?
  {
    frame.withUnsafeBytes { bytes in
      let start = tessera_timestamp()
      for _ in 0..<count {
        guard (try? net.send(frame: bytes)) == 1, let length = try? net.receive(frame: received),
          length == bytes.count, received[length - 1] == bytes[length - 1]
        else { return nil }
      }
      return tessera_timestamp() &- start
    }
  }

  private func report(_ name: KernelMessage, _ total: UInt64) {
    say(benchmarkLine(name, total: total, iterations: frames))
  }
}

func start() -> Program {
  Program.export(Runner())!
}
