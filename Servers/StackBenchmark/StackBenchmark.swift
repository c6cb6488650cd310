// StackBenchmark: see StackBenchmark.server. Under `make bench` (-icount shift=0)
// time-stamp-counter deltas are guest instructions.
//
// Contract: each figure is the instructions of `rounds` rounds divided by `rounds`, after
// a warm-up (which also resolves this host's own address through ARP): interrupts, the
// receive thread, every layer and the driver included. `stack_echo_SIZE_LABEL` is one
// Echo.echo of a SIZE-byte ICMP message to this host; `stack_udp_SIZE_LABEL` one sendTo of
// SIZE bytes to a socket of this host and the receive that returns them. A lost reply or a
// datagram that comes back wrong stops the benchmark with `@@BENCH failed`.

import KernelCore
import ServerRuntime
import TesseraABI

let rounds: UInt64 = 200

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

final class Runner: ProgramImplementation {
  func run() -> UInt {
    var label = KernelMessage()
    setting("label") { name, value throws(CallError) in try Required.settings.value(name: name, value: value)
    }
    .withUnsafeBufferPointer { label.append(text: $0) }
    guard let own = try? Required.ip.address(), own != 0,
      let socket = (try? Required.udp.openSocket(port: 0)) ?? nil, let port = try? socket.port()
    else {
      say("@@BENCH failed stack_\(label): no address configured, or no socket")
      return 1
    }
    let received = UnsafeMutableRawBufferPointer.allocate(byteCount: 8192, alignment: 4)
    defer { received.deallocate() }
    var sender = [UInt8](repeating: 0, count: 8)
    for size in [64, 1472] {
      // The ICMP message is 8 bytes of header and the data.
      guard echoes(own, data: size - 8, count: 10) != nil,
        let echo = echoes(own, data: size - 8, count: rounds)
      else {
        say("@@BENCH failed stack_echo_\(size)_\(label): an echo got no reply")
        return 1
      }
      say(benchmarkLine("stack_echo_\(size)_\(label)", total: echo, iterations: rounds))
      let payload = [UInt8]((0..<size).map { UInt8(truncatingIfNeeded: $0 &* 7) })
      func datagrams(_ count: UInt64) -> UInt64? {
        payload.withUnsafeBytes { bytes in
          sender.withUnsafeMutableBytes { from in
            let start = tessera_timestamp()
            for _ in 0..<count {
              guard (try? socket.sendTo(address: own, port: port, data: bytes)) == 1,
                let length = try? socket.receive(sender: from, data: received, milliseconds: 1000),
                length == size, from[6] == 1, received[size - 1] == bytes[size - 1]
              else { return nil }
            }
            return tessera_timestamp() &- start
          }
        }
      }
      guard datagrams(10) != nil, let udp = datagrams(rounds) else {
        say("@@BENCH failed stack_udp_\(size)_\(label): a datagram did not come back intact")
        return 1
      }
      say(benchmarkLine("stack_udp_\(size)_\(label)", total: udp, iterations: rounds))
    }
    return 0
  }

  /// Instructions `count` echoes to `address` with `data` bytes took; nil if one failed.
  private func echoes(_ address: UInt, data: Int, count: UInt64) -> UInt64? {
    let start = tessera_timestamp()
    for sequence in 0..<count {
      let result =
        (try? Required.icmp.echo(
          destination: address, sequence: UInt(sequence), size: UInt(data), milliseconds: 1000))
        ?? 0
      guard result != 0, result < 0xFFFF_FFFE else { return nil }
    }
    return tessera_timestamp() &- start
  }
}

func start() -> Program {
  Program.export(Runner())!
}
