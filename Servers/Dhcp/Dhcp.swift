// Dhcp: see Dhcp.server.
//
// Contract: the client's thread owns the socket on port 68 and the state machine; it
// wakes for every datagram and at least once a second to let the machine's timers run.
// Other threads only read the state (`describe`, `waitForLease`) under the ServerMutex.

import KernelCore
import ServerRuntime
import TesseraABI

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

final class Client: DhcpClientStateImplementation, RunnableImplementation {
  private let mutex: ServerMutex
  private let mac: MacAddress
  private var state = DhcpClient.State.initial
  private var lease: DhcpClient.Lease?
  private var leasedAt: UInt = 0
  /// The state machine: only the client's thread touches it.
  private var machine: DhcpClient

  init?() {
    guard let lock = try? Required.sync.makeSemaphore(count: 0) else { return nil }
    var bytes = [UInt8](repeating: 0, count: 6)
    guard (bytes.withUnsafeMutableBytes { try? Required.link.macAddress(address: $0) }) == 6 else {
      return nil
    }
    mac = bytes.withUnsafeBytes { MacAddress($0) }
    // A random transaction number: a forger off the link must guess it.
    var random = RandomNumbers(
      seed: UInt64(bytes[2]) << 24 | UInt64(bytes[3]) << 16 | UInt64(bytes[4]) << 8 | UInt64(bytes[5]))
    machine = DhcpClient(
      hardware: mac, transaction: UInt32(truncatingIfNeeded: random.next(stirring: tessera_timestamp()) >> 32)
    )
    mutex = ServerMutex(sleep: { try? lock.wait() }, wake: { try? lock.signal() })
  }

  private func now() -> UInt { (try? Required.clock.uptimeMilliseconds()) ?? 0 }

  /// The client's clock: milliseconds since boot, never wrapping (leases outlive 49 days).
  /// Only the client's thread reads it.
  private var uptime = Uptime()
  private func clientNow() -> UInt64 { uptime.extend(UInt32(truncatingIfNeeded: now())) }

  /// The prefix length of `mask` (its leading ones).
  private func prefixLength(_ mask: IPv4Address) -> UInt { UInt((~mask.value).leadingZeroBitCount) }

  private func perform(_ actions: [DhcpClient.Action], socket: UdpSocket) {
    for action in actions {
      switch action {
      case .send(let message, let server):
        _ = message.withUnsafeBytes {
          try? socket.sendTo(address: UInt((server ?? .broadcast).value), port: 67, data: $0)
        }
      case .configure(let lease):
        let configured =
          (try? Required.ip.configure(
            address: UInt(lease.address.value), prefixLength: prefixLength(lease.mask),
            gateway: UInt((lease.router ?? .unspecified).value))) == 1
        _ = try? Required.resolver.setServer(address: UInt((lease.dnsServer ?? .unspecified).value))
        mutex.withLock {
          self.lease = lease
          leasedAt = now()
        }
        if configured {
          say(
            "dhcp: leased \(lease.address)/\(prefixLength(lease.mask)), gateway \(lease.router ?? .unspecified), DNS \(lease.dnsServer ?? .unspecified), from \(lease.server) for \(lease.seconds) s"
          )
        } else {
          say(
            "dhcp: the lease of \(lease.address) from \(lease.server) makes no sense to the IPv4 layer; not used"
          )
        }
      case .probe(let lease):
        // RFC 2131 4.4.1: make sure no other host uses the address before taking it.
        let taken = (try? Required.arp.probe(address: UInt(lease.address.value), milliseconds: 1000)) == 1
        if taken { say("dhcp: \(lease.address) is in use by another host; declined, starting over in 10 s") }
        perform(machine.probed(inUse: taken, now: clientNow()), socket: socket)
      case .unconfigure:
        _ = try? Required.ip.configure(address: 0, prefixLength: 0, gateway: 0)
        mutex.withLock { lease = nil }
        say("dhcp: the lease ended; no address")
      }
    }
  }

  /// The client's thread.
  func run() {
    guard let socket = (try? Required.udp.openSocket(port: 68)) ?? nil else {
      say("dhcp: port 68 is taken; no DHCP")
      return
    }
    perform(machine.start(now: clientNow()), socket: socket)
    var message = [UInt8](repeating: 0, count: 1500)
    var sender = [UInt8](repeating: 0, count: 8)
    while true {
      let count = sender.withUnsafeMutableBytes { senderBytes in
        message.withUnsafeMutableBytes {
          (try? socket.receive(sender: senderBytes, data: $0, milliseconds: 1000)) ?? 0
        }
      }
      var actions: [DhcpClient.Action] = []
      // Servers answer from port 67 (RFC 2131 4.1); anything else is not a DHCP reply.
      if sender[6] == 1, sender[4] == 0, sender[5] == 67,
        let parsed = message.withUnsafeBytes({
          try? DhcpMessage(UnsafeRawBufferPointer(rebasing: $0[0..<count]))
        })
      {
        actions = machine.receive(parsed, now: clientNow())
      }
      actions += machine.tick(now: clientNow())
      perform(actions, socket: socket)
      let current = machine.state
      mutex.withLock { state = current }
    }
  }

  func describe(text: UnsafeMutableRawBufferPointer) -> Int {
    let (state, lease, leasedAt) = mutex.withLock { (self.state, self.lease, self.leasedAt) }
    var writer = TextWriter(text)
    let names: [(DhcpClient.State, StaticString)] = [
      (.initial, "starting"), (.selecting, "selecting (discover sent)"), (.requesting, "requesting"),
      (.bound, "bound"), (.renewing, "renewing"), (.rebinding, "rebinding"),
      (.checking, "checking the address (ARP probe)"),
      (.declined, "declined an address in use; starting over"),
    ]
    let name = names.first(where: { $0.0 == state })?.1 ?? "unknown"
    writer.line("dhcp: \(name)")
    if let lease {
      let elapsed = (now() &- leasedAt) / 1000
      let left = UInt(lease.seconds) > elapsed ? UInt(lease.seconds) - elapsed : 0
      writer.line(
        "dhcp: lease \(lease.address) mask \(lease.mask) gateway \(lease.router ?? .unspecified) DNS \(lease.dnsServer ?? .unspecified) from \(lease.server), \(left) s left"
      )
    }
    return writer.finish()
  }

  func waitForLease(milliseconds: UInt) -> UInt {
    let deadline = now() &+ milliseconds
    while true {
      if mutex.withLock({ lease != nil }) { return 1 }
      let left = deadline &- now()
      guard left > 0, left < 0x8000_0000 else { return 0 }
      try? Required.clock.sleep(milliseconds: min(left, 50))
    }
  }
}

func start() -> DhcpClientState {
  guard let client = Client() else {
    say("dhcp: no semaphore, or the link has no address")
    fatalError("dhcp: cannot start")
  }
  guard let work = Runnable.export(client), (try? Required.threads.spawn(work: work, priority: 2)) ?? 0 != 0
  else {
    say("dhcp: no thread could be started")
    fatalError("dhcp: no thread")
  }
  _ = work.release()
  return DhcpClientState.export(client)!
}
