// IPv4: see IPv4.server. Header layout, validation and reassembly are KernelCore's
// (IPv4.swift, IPv4Reassembly.swift, host-tested); this server routes and moves buffers.
//
// Contract: words from other servers (areas, offsets, lengths, buffer numbers) are checked
// against the mapped areas before any byte is read. A datagram is delivered where it lies
// (area 0, the link's receive buffers) unless it was reassembled (area 1, one buffer: the
// link's single receive thread delivers one datagram at a time). Dropped datagrams are
// counted by reason. ICMP errors go out at most 50 a second. Thread-safe: one ServerMutex
// guards the configuration, tables, reassembly and counters, never held across a call.

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

/// Counts by reason (the reasons are static strings, compared by address).
struct Reasons {
  private(set) var list: [(reason: StaticString, count: Int)] = []

  mutating func count(_ reason: StaticString) {
    if let index = list.firstIndex(where: { $0.reason.utf8Start == reason.utf8Start }) {
      list[index].count += 1
    } else {
      list.append((reason, 1))
    }
  }
}

final class Layer: InternetImplementation, InternetStatusImplementation, EthernetReceiverImplementation,
  RunnableImplementation
{
  static let mtu = 1500

  private let receiveMemory: Memory
  private let sendMemory: Memory
  private let reassemblyMemory: Memory
  private let areas: PacketAreas
  /// Area 1 as this server writes it.
  private let reassemblyWritable: UnsafeMutableRawPointer
  private let mutex: ServerMutex

  private var hostAddress = IPv4Address.unspecified
  private var hostPrefixLength = 0
  private var gatewayAddress = IPv4Address.unspecified
  private var receivers: [(number: UInt8, receiver: IPv4Receiver)] = []
  private var reassembly = IPv4Reassembly()
  private var identification: UInt16 = 1
  private var dropped = Reasons()
  private var counts = (received: 0, delivered: 0, sent: 0, fragmentsSent: 0, reassembled: 0, errorsSent: 0)
  /// ICMP errors sent in the current second, and which second that is.
  private var errorBudget = (second: UInt64(0), sent: 0)

  init?() {
    guard let receive = (try? Required.link.receiveBuffers()) ?? nil,
      let send = (try? Required.link.sendBuffers()) ?? nil,
      let reassembly = (try? Required.memory.allocate(bytes: UInt(PacketAreas.reassemblySize))) ?? nil,
      let receiveAddress = try? Required.memory.map(memory: receive, writable: 0), receiveAddress != 0,
      let sendAddress = try? Required.memory.map(memory: send, writable: 1), sendAddress != 0,
      let reassemblyAddress = try? Required.memory.map(memory: reassembly, writable: 1),
      reassemblyAddress != 0,
      let lock = try? Required.sync.makeSemaphore(count: 0)
    else { return nil }
    receiveMemory = receive
    sendMemory = send
    reassemblyMemory = reassembly
    areas = PacketAreas(receive: receiveAddress, reassembly: reassemblyAddress, send: sendAddress)
    reassemblyWritable = UnsafeMutableRawPointer(bitPattern: reassemblyAddress)!
    mutex = ServerMutex(sleep: { try? lock.wait() }, wake: { try? lock.signal() })
  }

  private var uptime = Uptime()

  /// Milliseconds since boot, never wrapping (reassembly times outlive 49 days).
  private func now() -> UInt64 {
    let reading = UInt32(truncatingIfNeeded: (try? Required.clock.uptimeMilliseconds()) ?? 0)
    return mutex.withLock { uptime.extend(reading) }
  }

  /// The datagram being delivered if its frame went to the link's broadcast or a group
  /// address (area, header): no ICMP error may answer it (RFC 1122 3.2.2). One at a time:
  /// deliveries come from the link's one receive thread.
  private var linkBroadcast: (area: UInt, header: UInt)?

  /// Whether `destination` is this host, a broadcast, or a group it takes (all hosts).
  private func isForUs(_ destination: IPv4Address) -> Bool {
    mutex.withLock {
      let mask = IPv4Address.mask(prefixLength: hostPrefixLength)
      return hostAddress == .unspecified  // no hostAddress yet (DHCP): take everything
        || destination == hostAddress || destination == .broadcast
        || (hostPrefixLength < 31 && destination.value == hostAddress.value | ~mask)
        || destination == IPv4Address(224, 0, 0, 1)
    }
  }

  private func drop(_ reason: StaticString) { mutex.withLock { dropped.count(reason) } }

  // MARK: Receiving (EthernetReceiver)

  func receive(offset: UInt, length: UInt, broadcast: UInt) {
    guard let bytes = areas.view(area: 0, offset: offset, length: length) else { return }
    mutex.withLock { counts.received &+= 1 }
    let packet: IPv4Packet
    do throws(PacketError) {
      packet = try IPv4Packet(bytes)
    } catch {
      drop(error.reason)
      return
    }
    guard packet.timeToLive > 0 else { return drop("TTL expired") }
    let source = packet.source
    guard source != .broadcast, source.value >> 28 != 0xE else { return drop("source is a group address") }
    guard isForUs(packet.destination) else { return drop("not for this host") }
    if packet.isFragment {
      let time = now()
      let outcome = mutex.withLock { reassembly.add(packet, now: time) }
      switch outcome {
      case .incomplete: return
      case .refused(let reason): return drop(reason)
      case .complete(let whole):
        mutex.withLock { counts.reassembled &+= 1 }
        deliverReassembled(whole, broadcast: broadcast != 0)
        return
      }
    }
    deliver(
      area: 0, header: offset, headerLength: packet.headerLength, protocolNumber: packet.protocolNumber,
      payloadLength: packet.payload.count, broadcast: broadcast != 0 || packet.destination != hostAddress)
  }

  private func deliverReassembled(_ whole: IPv4Reassembly.Reassembled, broadcast: Bool) {
    let total = whole.header.count + whole.payload.count
    guard total <= PacketAreas.reassemblySize else { return drop("reassembled datagram too large") }
    whole.header.withUnsafeBytes { reassemblyWritable.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    whole.payload.withUnsafeBytes {
      (reassemblyWritable + whole.header.count).copyMemory(from: $0.baseAddress!, byteCount: $0.count)
    }
    deliver(
      area: 1, header: 0, headerLength: whole.header.count, protocolNumber: whole.protocolNumber,
      payloadLength: whole.payload.count, broadcast: broadcast || whole.destination != hostAddress)
  }

  private func deliver(
    area: UInt, header: UInt, headerLength: Int, protocolNumber: UInt8, payloadLength: Int, broadcast: Bool
  ) {
    let receiver: IPv4Receiver? = mutex.withLock {
      let found = receivers.first(where: { $0.number == protocolNumber })?.receiver
      if found != nil { counts.delivered &+= 1 }
      return found
    }
    if broadcast { mutex.withLock { linkBroadcast = (area, header) } }
    defer { if broadcast { mutex.withLock { linkBroadcast = nil } } }
    guard let receiver else {
      drop("no protocol for the number")
      // RFC 1122 3.2.2.1: protocol unreachable (not for broadcasts: sendError checks).
      _ = sendError(type: 3, code: 2, area: area, header: header)
      return
    }
    do throws(CallError) {
      try receiver.receive(
        area: area, header: header, payload: header + UInt(headerLength), length: UInt(payloadLength))
    } catch {
      drop("the protocol's server failed")
    }
  }

  // MARK: Sending

  /// The next hop for `destination`, or nil if there is no route.
  private func nextHop(_ destination: IPv4Address) -> IPv4Address? {
    mutex.withLock {
      let mask = IPv4Address.mask(prefixLength: hostPrefixLength)
      if destination == .broadcast || destination.value >> 28 == 0xE { return destination }
      guard hostAddress != .unspecified else { return nil }
      if destination.value & mask == hostAddress.value & mask { return destination }
      return gatewayAddress == .unspecified ? nil : gatewayAddress
    }
  }

  /// Writes the IPv4 header into send buffer `buffer` and hands it to ARP; the buffer is
  /// ARP's afterwards. Whether it went (or waits).
  private func transmit(
    buffer: UInt, payloadLength: Int, destination: IPv4Address, hop: IPv4Address, number: UInt8,
    moreFragments: Bool = false, fragmentOffset: Int = 0, identification given: UInt16? = nil, checksums: UInt
  ) -> Bool {
    let (source, chosen) = mutex.withLock {
      defer { if given == nil { self.identification &+= 1 } }
      return (hostAddress, given ?? self.identification)
    }
    guard let header = areas.sendBuffer(buffer, from: PacketAreas.ipv4HeaderOffset) else { return false }
    IPv4Packet.emit(
      into: header, payloadLength: payloadLength, identification: chosen, moreFragments: moreFragments,
      fragmentOffset: fragmentOffset, protocolNumber: number, source: source, destination: destination)
    let result =
      (try? Required.arp.send(
        buffer: buffer, length: UInt(IPv4Packet.minimumHeaderLength + payloadLength),
        nextHop: UInt(hop.value),
        checksums: checksums)) ?? 0
    mutex.withLock { counts.sent &+= 1 }
    return result != 0
  }

  private func validBuffer(_ buffer: UInt) -> Bool {
    buffer >= 1 && buffer <= UInt(PacketAreas.sendBufferCount)
  }

  func send(buffer: UInt, length: UInt, destination: UInt, number: UInt, checksums: UInt) -> UInt {
    guard validBuffer(buffer), number <= 255 else { return 0 }
    let target = IPv4Address(value: UInt32(truncatingIfNeeded: destination))
    guard length <= UInt(Layer.mtu - IPv4Packet.minimumHeaderLength) else {
      _ = try? Required.link.free(buffer: buffer)
      drop("too large for a send buffer (use sendLarge)")
      return 0
    }
    guard let hop = nextHop(target) else {
      _ = try? Required.link.free(buffer: buffer)
      drop("no route")
      return 0
    }
    return transmit(
      buffer: buffer, payloadLength: Int(length), destination: target, hop: hop, number: UInt8(number),
      checksums: checksums) ? 1 : 0
  }

  func sendLarge(destination: UInt, number: UInt, payload: UnsafeRawBufferPointer) -> UInt {
    guard number <= 255, !payload.isEmpty else { return 0 }
    let target = IPv4Address(value: UInt32(truncatingIfNeeded: destination))
    guard let hop = nextHop(target) else {
      drop("no route")
      return 0
    }
    let identification = mutex.withLock {
      defer { self.identification &+= 1 }
      return self.identification
    }
    // Fragments carry multiples of 8 bytes, the most a frame holds.
    let most = (Layer.mtu - IPv4Packet.minimumHeaderLength) & ~7
    var offset = 0
    while offset < payload.count {
      let count = min(most, payload.count - offset)
      guard let buffer = try? Required.link.allocate(),
        let fragment = areas.sendBuffer(buffer, from: PacketAreas.ipv4PayloadOffset)
      else {
        drop("no send buffer")
        return 0
      }
      fragment.baseAddress!.copyMemory(from: payload.baseAddress! + offset, byteCount: count)
      let last = offset + count == payload.count
      guard
        transmit(
          buffer: buffer, payloadLength: count, destination: target, hop: hop, number: UInt8(number),
          moreFragments: !last, fragmentOffset: offset, identification: identification, checksums: 0)
      else { return 0 }
      mutex.withLock { counts.fragmentsSent &+= 1 }
      offset += count
    }
    return 1
  }

  // MARK: ICMP errors

  func sendError(type: UInt, code: UInt, area: UInt, header: UInt) -> UInt {
    let isLinkBroadcast = mutex.withLock {
      linkBroadcast.map { $0.area == area && $0.header == header } ?? false
    }
    guard !isLinkBroadcast, type <= 255, code <= 255,
      let first = areas.view(area: area, offset: header, length: 20)
    else { return 0 }
    let length = UInt(first[0] & 0x0F) * 4
    let total = UInt(first[2]) << 8 | UInt(first[3])
    // The header and 8 bytes of payload (RFC 792), as far as the datagram goes.
    guard length >= 20, total >= length,
      let original = areas.view(area: area, offset: header, length: min(total, length + 8))
    else { return 0 }
    return sendError(type: UInt8(type), code: UInt8(code), quoting: original) ? 1 : 0
  }

  /// An ICMP error quoting `original` (a header and what follows), unless RFC 1122 3.2.2
  /// forbids one for it or the rate limit is reached.
  private func sendError(type: UInt8, code: UInt8, quoting original: UnsafeRawBufferPointer) -> Bool {
    guard original.count >= 20 else { return false }
    let source = IPv4Address(original, at: IPv4Packet.Offset.source)
    let destination = IPv4Address(original, at: IPv4Packet.Offset.destination)
    let headerLength = Int(original[0] & 0x0F) * 4
    let fragmentOffset = (Int(original[6]) << 8 | Int(original[7])) & 0x1FFF
    let isIcmpError =
      original[IPv4Packet.Offset.protocolNumber] == IPv4Packet.icmp && original.count > headerLength
      && [3, 4, 5, 11, 12].contains(original[headerLength])
    guard !isIcmpError, fragmentOffset == 0, source != .unspecified, source != .broadcast,
      source.value >> 28 != 0xE, destination != .broadcast, destination.value >> 28 != 0xE,
      isForUsUnicast(destination)
    else { return false }
    let second = now() / 1000
    let allowed = mutex.withLock {
      if errorBudget.second != second { errorBudget = (second, 0) }
      errorBudget.sent += 1
      return errorBudget.sent <= 50
    }
    guard allowed, let hop = nextHop(source), let buffer = try? Required.link.allocate(), buffer != 0 else {
      return false
    }
    guard let message = areas.sendBuffer(buffer, from: PacketAreas.ipv4PayloadOffset),
      let length = IcmpMessage.emitError(into: message, type: type, code: code, quoting: original)
    else {
      _ = try? Required.link.free(buffer: buffer)
      return false
    }
    mutex.withLock { counts.errorsSent &+= 1 }
    return transmit(
      buffer: buffer, payloadLength: length, destination: source, hop: hop, number: IPv4Packet.icmp,
      checksums: 0)
  }

  /// Whether `destination` is this host's own unicast address (errors answer only those).
  private func isForUsUnicast(_ destination: IPv4Address) -> Bool {
    mutex.withLock {
      let mask = IPv4Address.mask(prefixLength: hostPrefixLength)
      return hostAddress != .unspecified && destination == hostAddress
        && !(hostPrefixLength < 31 && destination.value == hostAddress.value | ~mask)
    }
  }

  func passError(type: UInt, code: UInt, area: UInt, offset: UInt, length: UInt) {
    guard let original = areas.view(area: area, offset: offset, length: length), original.count >= 28 else {
      return
    }
    // Only errors about datagrams this host sent: one quoting another source is forged or
    // misrouted, and would end a lookup or a waiting echo for nothing.
    let quotedSource = IPv4Address(original, at: IPv4Packet.Offset.source)
    guard mutex.withLock({ hostAddress != .unspecified && quotedSource == hostAddress }) else {
      return drop("ICMP error about a datagram this host did not send")
    }
    let number = original[IPv4Packet.Offset.protocolNumber]
    let receiver = mutex.withLock { receivers.first(where: { $0.number == number })?.receiver }
    _ = try? receiver?.error(type: type, code: code, area: area, offset: offset, length: length)
  }

  // MARK: Registration, buffers, configuration

  func register(number: UInt, receiver: IPv4Receiver) -> UInt {
    guard number <= 255 else { return 0 }
    let added = mutex.withLock {
      guard receivers.count < 8, !receivers.contains(where: { UInt($0.number) == number }) else {
        return false
      }
      receivers.append((UInt8(number), receiver))
      return true
    }
    guard added, (try? receiver.acquire()) != nil else { return 0 }
    return 1
  }

  func receiveBuffers() -> Memory? { (try? receiveMemory.acquire()) != nil ? receiveMemory : nil }

  func reassemblyBuffer() -> Memory? { (try? reassemblyMemory.readOnly()) ?? nil }

  func sendBuffers() -> Memory? { (try? sendMemory.acquire()) != nil ? sendMemory : nil }

  func allocate() -> UInt { (try? Required.link.allocate()) ?? 0 }

  func free(buffer: UInt) -> UInt { (try? Required.link.free(buffer: buffer)) ?? 0 }

  func configure(address new: UInt, prefixLength length: UInt, gateway: UInt) -> UInt {
    let value = IPv4Address(value: UInt32(truncatingIfNeeded: new))
    let router = IPv4Address(value: UInt32(truncatingIfNeeded: gateway))
    // A host address is unicast: no group, no limited broadcast (0 drops the configuration).
    guard length <= 32, value.value >> 28 != 0xE, value.value >> 28 != 0xF else { return 0 }
    let mask = IPv4Address.mask(prefixLength: Int(length))
    guard router == .unspecified || router.value & mask == value.value & mask else { return 0 }
    mutex.withLock {
      hostAddress = value
      hostPrefixLength = value == .unspecified ? 0 : Int(length)
      gatewayAddress = value == .unspecified ? .unspecified : router
    }
    _ = try? Required.arp.setAddress(address: UInt(value.value))
    return 1
  }

  func status() -> InternetStatus { InternetStatus.export(self)! }

  func address() -> UInt { mutex.withLock { UInt(hostAddress.value) } }
  func prefixLength() -> UInt { mutex.withLock { UInt(hostPrefixLength) } }
  func gateway() -> UInt { mutex.withLock { UInt(gatewayAddress.value) } }

  func routes(text: UnsafeMutableRawBufferPointer) -> Int {
    let (address, length, router) = mutex.withLock { (hostAddress, hostPrefixLength, gatewayAddress) }
    var writer = TextWriter(text)
    writer.line("destination         gateway          interface")
    if address == .unspecified {
      writer.line("(no address: only broadcasts go out)")
    } else {
      let network = IPv4Address(value: address.value & IPv4Address.mask(prefixLength: length))
      writer.line("\(network)/\(length)  on-link          eth0 (\(address))")
      if router != .unspecified { writer.line("0.0.0.0/0           \(router)         eth0") }
    }
    return writer.finish()
  }

  func counters(text: UnsafeMutableRawBufferPointer) -> Int {
    let (copy, reasons, held, evicted) = mutex.withLock {
      (counts, dropped.list, reassembly.bytesHeld, reassembly.evicted)
    }
    var writer = TextWriter(text)
    writer.line(
      "ipv4: received \(copy.received), delivered \(copy.delivered), reassembled \(copy.reassembled) (\(held) bytes held, \(evicted) evicted), sent \(copy.sent) (\(copy.fragmentsSent) fragments), ICMP errors sent \(copy.errorsSent)"
    )
    for (reason, count) in reasons { writer.line("ipv4: dropped \(count): \(reason)") }
    return writer.finish()
  }

  // MARK: Runnable (the timer): reassembly time-outs

  func run() {
    let time = now()
    let expired = mutex.withLock { reassembly.expire(now: time) }
    for datagram in expired {
      drop("reassembly timed out")
      guard !datagram.header.isEmpty else { continue }
      // RFC 1122 3.3.2: time exceeded (fragment reassembly), quoting the first fragment.
      let quoted = datagram.header + datagram.data.prefix(8)
      _ = quoted.withUnsafeBytes { sendError(type: 11, code: 1, quoting: $0) }
    }
  }
}

/// The composition's setting `name` for this instance (empty if none).
func setting(_ name: StaticString) -> [UInt8] {
  ServerRuntime.setting(name) { name, value throws(CallError) in
    try Required.settings.value(name: name, value: value)
  }
}

func start() -> Internet {
  guard let layer = Layer() else {
    say("ipv4: the link's buffers could not be mapped, or no memory for reassembly")
    fatalError("ipv4: no buffers")
  }
  guard let receiver = EthernetReceiver.export(layer),
    (try? Required.link.register(type: UInt(EtherType.ipv4), receiver: receiver)) == 1
  else {
    say("ipv4: the link refused to deliver IPv4 frames (is another IPv4 layer registered?)")
    fatalError("ipv4: not registered")
  }
  _ = receiver.release()
  guard let tick = Runnable.export(layer),
    (try? Required.timers.every(milliseconds: 1000, callback: tick)) ?? 0 != 0
  else {
    say("ipv4: no timer")
    fatalError("ipv4: no timer")
  }
  _ = tick.release()
  // A static configuration, if the composition gives one.
  let address = setting("address")
  let gateway = setting("gateway")
  if !address.isEmpty {
    let parsed = address.withUnsafeBufferPointer { IPv4Address.parsingPrefix($0) }
    let router: IPv4Address? =
      gateway.isEmpty ? IPv4Address.unspecified : gateway.withUnsafeBufferPointer { IPv4Address(parsing: $0) }
    guard let (value, length) = parsed, let router,
      layer.configure(address: UInt(value.value), prefixLength: UInt(length), gateway: UInt(router.value))
        == 1
    else {
      say("ipv4: the settings `address` (a.b.c.d/N) and `gateway` (a.b.c.d, on the subnet) do not make sense")
      fatalError("ipv4: bad settings")
    }
    say("ipv4: configured \(value)/\(length), gateway \(router)")
  }
  return Internet.export(layer)!
}
