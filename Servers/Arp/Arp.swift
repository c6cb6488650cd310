// Arp: see Arp.server. Packet layout and cache policy are KernelCore's (Arp.swift,
// ArpCache.swift, host-tested); this server moves buffers.
//
// Contract: a datagram handed to `send` is in a link send buffer, which this server owns
// from then on: it sends it, keeps it while the address is asked for (the cache's token
// for it is the buffer number, length and checksum flag), or frees it when dropped. A
// timer every 250 ms retries requests and drops datagrams whose address never answered.
// Thread-safe: one ServerMutex guards the cache and counters, never held across a call.

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

/// A waiting datagram as the cache's token: buffer number, length, checksum flag.
struct Waiting {
  let buffer: UInt
  let length: UInt
  let checksums: UInt

  init(buffer: UInt, length: UInt, checksums: UInt) {
    self.buffer = buffer
    self.length = length
    self.checksums = checksums
  }

  init(token: UInt32) {
    buffer = UInt(token & 0xFF)
    length = UInt((token >> 8) & 0xFFFF)
    checksums = UInt(token >> 31)
  }

  var token: UInt32 {
    UInt32(truncatingIfNeeded: buffer & 0xFF) | UInt32(truncatingIfNeeded: length & 0xFFFF) << 8
      | (checksums != 0 ? 1 << 31 : 0)
  }
}

final class Resolver: AddressResolutionImplementation, ArpStatusImplementation,
  EthernetReceiverImplementation,
  RunnableImplementation
{
  private let areas: PacketAreas
  private let mac: MacAddress
  private let mutex: ServerMutex
  private var cache = ArpCache()
  private var address = IPv4Address.unspecified
  private var lastConflictReport: UInt64?
  /// The address a probe asks about, and whether someone answered for it.
  private var probing: (address: IPv4Address, answered: Bool)?
  private let probeAnswer: Semaphore
  private var counts = (
    requestsIn: 0, repliesIn: 0, requestsOut: 0, repliesOut: 0, malformed: 0, dropped: 0, conflicts: 0
  )

  init?() {
    guard let receive = (try? Required.link.receiveBuffers()) ?? nil,
      let send = (try? Required.link.sendBuffers()) ?? nil,
      let receiveAddress = try? Required.memory.map(memory: receive, writable: 0), receiveAddress != 0,
      let sendAddress = try? Required.memory.map(memory: send, writable: 1), sendAddress != 0,
      let lock = try? Required.sync.makeSemaphore(count: 0)
    else { return nil }
    _ = receive.release()
    _ = send.release()
    var bytes = [UInt8](repeating: 0, count: 6)
    guard (bytes.withUnsafeMutableBytes { try? Required.link.macAddress(address: $0) }) == 6 else {
      return nil
    }
    mac = bytes.withUnsafeBytes { MacAddress($0) }
    areas = PacketAreas(receive: receiveAddress, reassembly: 0, send: sendAddress)
    mutex = ServerMutex(sleep: { try? lock.wait() }, wake: { try? lock.signal() })
    guard let answer = try? Required.sync.makeSemaphore(count: 0) else { return nil }
    probeAnswer = answer
  }

  private var uptime = Uptime()

  /// Milliseconds since boot, never wrapping (the cache's times outlive 49 days).
  private func now() -> UInt64 {
    let reading = UInt32(truncatingIfNeeded: (try? Required.clock.uptimeMilliseconds()) ?? 0)
    return mutex.withLock { uptime.extend(reading) }
  }

  /// Sends a buffer's datagram (IPv4, or with `type` an ARP packet) to `hardware`.
  private func transmit(_ packet: Waiting, to hardware: MacAddress, type: UInt16 = EtherType.ipv4) {
    let bytes = hardware.bytes
    _ = try? Required.link.send(
      buffer: packet.buffer, length: packet.length, destinationHigh: UInt(bytes.0) << 8 | UInt(bytes.1),
      destinationLow: UInt(bytes.2) << 24 | UInt(bytes.3) << 16 | UInt(bytes.4) << 8 | UInt(bytes.5),
      type: UInt(type), checksums: packet.checksums)
  }

  private func drop(_ tokens: [UInt32]) {
    for token in tokens { _ = try? Required.link.free(buffer: Waiting(token: token).buffer) }
  }

  /// Sends an ARP packet (request or reply).
  private func sendArp(
    operation: UInt16, targetHardware: MacAddress, target: IPv4Address, to destination: MacAddress,
    probing: Bool = false
  ) {
    guard let buffer = try? Required.link.allocate(), buffer != 0,
      let frame = areas.sendBuffer(buffer, from: EthernetFrame.Offset.payload)
    else { return }
    // A probe names no sender address (RFC 5227 2.1.1): it must not teach anyone ours.
    let source = probing ? IPv4Address.unspecified : mutex.withLock { address }
    ArpPacket.emit(
      into: frame, operation: operation, senderHardware: mac, senderProtocol: source,
      targetHardware: targetHardware, targetProtocol: target)
    mutex.withLock {
      if operation == ArpPacket.request { counts.requestsOut &+= 1 } else { counts.repliesOut &+= 1 }
    }
    transmit(
      Waiting(buffer: buffer, length: UInt(ArpPacket.length), checksums: 0), to: destination,
      type: EtherType.arp)
  }

  private func request(_ target: IPv4Address) {
    sendArp(
      operation: ArpPacket.request, targetHardware: MacAddress(0, 0, 0, 0, 0, 0), target: target,
      to: .broadcast)
  }

  // MARK: AddressResolution

  func send(buffer: UInt, length: UInt, nextHop: UInt, checksums: UInt) -> UInt {
    let packet = Waiting(buffer: buffer, length: length, checksums: checksums)
    let hop = IPv4Address(value: UInt32(truncatingIfNeeded: nextHop))
    guard buffer <= 0xFF, length <= 1500 else {
      _ = try? Required.link.free(buffer: buffer)
      return 0
    }
    if hop == .broadcast {
      transmit(packet, to: .broadcast)
      return 1
    }
    if hop.value >> 28 == 0xE {
      // IPv4 multicast maps onto 01:00:5e and the group's low 23 bits (RFC 1112 6.4).
      let low = hop.value & 0x7F_FFFF
      transmit(
        packet,
        to: MacAddress(
          0x01, 0x00, 0x5E, UInt8(low >> 16), UInt8(truncatingIfNeeded: low >> 8),
          UInt8(truncatingIfNeeded: low)))
      return 1
    }
    let time = now()
    let (resolution, evicted) = mutex.withLock {
      let resolution = cache.resolve(hop, packet: packet.token, now: time)
      return (resolution, cache.takeEvicted())
    }
    drop(evicted)
    switch resolution {
    case .ready(let hardware):
      transmit(packet, to: hardware)
      return 1
    case .queuedSendRequest:
      request(hop)
      return 2
    case .queued:
      return 2
    case .dropped:
      mutex.withLock { counts.dropped &+= 1 }
      _ = try? Required.link.free(buffer: buffer)
      return 0
    }
  }

  func probe(address: UInt, milliseconds: UInt) -> UInt {
    let target = IPv4Address(value: UInt32(truncatingIfNeeded: address))
    guard target != .unspecified, milliseconds <= 10_000 else { return 2 }
    let started = mutex.withLock {
      guard probing == nil else { return false }
      probing = (target, false)
      return true
    }
    guard started else { return 2 }
    sendArp(
      operation: ArpPacket.request, targetHardware: MacAddress(0, 0, 0, 0, 0, 0), target: target,
      to: .broadcast,
      probing: true)
    _ = try? probeAnswer.waitFor(milliseconds: milliseconds)
    let answered = mutex.withLock {
      defer { probing = nil }
      return probing?.answered ?? false
    }
    // An answer that came as the time ran out left a unit: take it for the next probe.
    _ = try? probeAnswer.waitFor(milliseconds: 0)
    return answered ? 1 : 0
  }

  func setAddress(address new: UInt) -> UInt {
    let value = IPv4Address(value: UInt32(truncatingIfNeeded: new))
    mutex.withLock { address = value }
    if value != .unspecified {
      // Gratuitous ARP (RFC 5227 3): a request for our own address, from it, to everyone.
      sendArp(
        operation: ArpPacket.request, targetHardware: MacAddress(0, 0, 0, 0, 0, 0), target: value,
        to: .broadcast)
    }
    return 1
  }

  func status() -> ArpStatus { ArpStatus.export(self)! }

  func entries(text: UnsafeMutableRawBufferPointer) -> Int {
    let time = now()
    let (list, copy) = mutex.withLock { (cache.snapshot(now: time), counts) }
    var writer = TextWriter(text)
    writer.line("address          hardware address   state     seconds")
    for entry in list {
      if let hardware = entry.hardware {
        writer.line("\(entry.address)  \(hardware)  resolved  \(entry.seconds)")
      } else {
        writer.line(
          "\(entry.address)  (asking)           waiting   \(entry.seconds) (\(entry.waiting) datagrams)")
      }
    }
    writer.line(
      "requests in \(copy.requestsIn), out \(copy.requestsOut); replies in \(copy.repliesIn), out \(copy.repliesOut); malformed \(copy.malformed); datagrams dropped \(copy.dropped); address conflicts \(copy.conflicts)"
    )
    return writer.finish()
  }

  // MARK: EthernetReceiver

  func receive(offset: UInt, length: UInt, broadcast: UInt) {
    guard let bytes = areas.view(area: 0, offset: offset, length: length), let packet = try? ArpPacket(bytes)
    else {
      mutex.withLock { counts.malformed &+= 1 }
      return
    }
    let sender = packet.senderProtocol
    let hardware = packet.senderHardware
    let time = now()
    let (ready, ours, conflict, report) = mutex.withLock {
      if packet.operation == ArpPacket.request { counts.requestsIn &+= 1 } else { counts.repliesIn &+= 1 }
      let ours = address != .unspecified && packet.targetProtocol == address
      let conflict = address != .unspecified && sender == address && hardware != mac
      var report = false
      if conflict {
        counts.conflicts &+= 1
        // One line in 10 s at most: a flood of claims must not flood the console.
        report = lastConflictReport == nil || time &- lastConflictReport! >= 10_000
        if report { lastConflictReport = time }
      }
      // A probe's address is taken if its owner speaks, or another station probes for it
      // too (RFC 5227 2.1.1).
      if let asked = probing, !asked.answered, hardware != mac,
        sender == asked.address || (sender == .unspecified && packet.targetProtocol == asked.address)
      {
        probing?.answered = true
        try? probeAnswer.signal()
      }
      // RFC 826's merge: update a known sender; add one only if the packet is for us.
      let ready =
        sender == .unspecified || conflict ? [] : cache.learn(sender, at: hardware, now: time, add: ours)
      return (ready, ours, conflict, report)
    }
    if report { say("arp: \(hardware) claims this host's address \(sender)") }
    for token in ready { transmit(Waiting(token: token), to: hardware) }
    if ours && packet.operation == ArpPacket.request {
      sendArp(operation: ArpPacket.reply, targetHardware: hardware, target: sender, to: hardware)
    }
  }

  // MARK: Runnable (the timer)

  func run() {
    let time = now()
    let (requests, failed) = mutex.withLock {
      let due = cache.tick(now: time)
      counts.dropped &+= due.failed.reduce(0) { $0 + $1.1.count }
      return due
    }
    for (_, tokens) in failed { drop(tokens) }
    for address in requests { request(address) }
  }
}

func start() -> AddressResolution {
  guard let resolver = Resolver() else {
    say("arp: the link's buffers could not be mapped")
    fatalError("arp: no buffers")
  }
  guard let receiver = EthernetReceiver.export(resolver),
    (try? Required.link.register(type: UInt(EtherType.arp), receiver: receiver)) == 1
  else {
    say("arp: the link refused to deliver ARP frames (is another ARP layer registered?)")
    fatalError("arp: not registered")
  }
  _ = receiver.release()
  guard let tick = Runnable.export(resolver),
    (try? Required.timers.every(milliseconds: 250, callback: tick)) ?? 0 != 0
  else {
    say("arp: no timer")
    fatalError("arp: no timer")
  }
  _ = tick.release()
  return AddressResolution.export(resolver)!
}
