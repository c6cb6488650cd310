// Udp: see Udp.server. Header layout and checksums are KernelCore's (Udp.swift,
// host-tested); this server keeps the sockets.
//
// Contract: at most 32 sockets; each queues at most 16 datagrams and 32 KiB (beyond:
// dropped and counted) until its holder receives them; a socket's port is free again when
// the last reference to it goes. A datagram that fits one frame is written straight into
// a link send buffer; a larger one (up to 8,192 bytes) goes through sendLarge and is
// fragmented. Thread-safe: one ServerMutex guards the socket table, queues and counters,
// never held across a call to another server.

import KernelCore
import ServerRuntime
import TesseraABI

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

/// What a socket's queue holds: a datagram, or an ICMP error about one it sent.
struct Arrival {
  var address: UInt32
  var port: UInt16
  /// 1 a datagram, 2 port unreachable, 3 another destination unreachable (UdpSocket.receive).
  var kind: UInt8
  var data: [UInt8]
}

/// The state of one socket, kept in the layer's table (under its mutex).
struct Binding {
  var port: UInt16
  var queue: [Arrival] = []
  var queuedBytes = 0
  let arrivals: Semaphore
}

final class Layer: UdpServiceImplementation, IPv4ReceiverImplementation {
  static let maximumSockets = 32
  static let maximumQueued = 16
  static let maximumQueuedBytes = 32 * 1024
  static let maximumData = 8192

  let areas: PacketAreas
  let mutex: ServerMutex
  var bindings: [Binding] = []
  private var random = RandomNumbers(seed: tessera_timestamp())
  var counts = (
    received: 0, delivered: 0, sent: 0, malformed: 0, closedPort: 0, queueFull: 0, tooLong: 0, errorsIn: 0
  )

  init?() {
    guard
      let areas = PacketAreas(
        receive: (try? Required.ip.receiveBuffers()) ?? nil,
        reassembly: (try? Required.ip.reassemblyBuffer()) ?? nil,
        send: (try? Required.ip.sendBuffers()) ?? nil,
        map: { memory, writable in (try? Required.memory.map(memory: memory, writable: writable)) ?? 0 }),
      let lock = try? Required.sync.makeSemaphore(count: 0)
    else { return nil }
    self.areas = areas
    mutex = ServerMutex(sleep: { try? lock.wait() }, wake: { try? lock.signal() })
  }

  // MARK: UdpService

  func openSocket(port: UInt) -> UdpSocket? {
    guard port <= 0xFFFF, let arrivals = try? Required.sync.makeSemaphore(count: 0) else { return nil }
    let chosen: UInt16? = mutex.withLock {
      guard bindings.count < Layer.maximumSockets else { return nil }
      var candidate = UInt16(port)
      if candidate == 0 {
        // A free ephemeral port (RFC 6335: 49152-65535), from a random start (RFC 6056),
        // so a reply's port cannot be guessed from the last one.
        let start = UInt16(truncatingIfNeeded: random.next(stirring: tessera_timestamp()) >> 50)  // 0..<16384
        for step in 0..<UInt16(16384) {
          let next = 49152 + (start &+ step) % 16384
          if !bindings.contains(where: { $0.port == next }) {
            candidate = next
            break
          }
        }
      }
      guard candidate != 0, !bindings.contains(where: { $0.port == candidate }) else { return nil }
      bindings.append(Binding(port: candidate, arrivals: arrivals))
      return candidate
    }
    guard let chosen else {
      _ = arrivals.release()
      return nil
    }
    return UdpSocket.export(Socket(layer: self, port: chosen, arrivals: arrivals))
  }

  func counters(text: UnsafeMutableRawBufferPointer) -> Int {
    let (copy, sockets) = mutex.withLock { (counts, bindings.map { $0.port }) }
    var writer = TextWriter(text)
    writer.line(
      "udp: received \(copy.received), delivered \(copy.delivered), sent \(copy.sent), sockets \(sockets.count)"
    )
    writer.line(
      "udp: dropped: malformed \(copy.malformed), closed port \(copy.closedPort), queue full \(copy.queueFull), longer than the reader's buffer \(copy.tooLong); ICMP errors in \(copy.errorsIn)"
    )
    return writer.finish()
  }

  // MARK: IPv4Receiver

  func receive(area: UInt, header: UInt, payload: UInt, length: UInt) {
    guard let headerBytes = areas.view(area: area, offset: header, length: 20),
      let bytes = areas.view(area: area, offset: payload, length: length)
    else { return }
    let source = IPv4Address(headerBytes, at: IPv4Packet.Offset.source)
    let destination = IPv4Address(headerBytes, at: IPv4Packet.Offset.destination)
    mutex.withLock { counts.received &+= 1 }
    guard let datagram = try? UdpDatagram(bytes, source: source, destination: destination) else {
      mutex.withLock { counts.malformed &+= 1 }
      return
    }
    let arrival = Arrival(
      address: source.value, port: datagram.sourcePort, kind: 1, data: Array(datagram.payload))
    if !enqueue(arrival, port: datagram.destinationPort) {
      // Closed: RFC 1122 4.1.3.1 asks for port unreachable (the IPv4 layer leaves out
      // broadcasts and the rest RFC 1122 forbids).
      _ = try? Required.ip.sendError(type: 3, code: 3, area: area, header: header)
    }
  }

  /// Queues `arrival` on the socket of `port`; false if no socket has it.
  private func enqueue(_ arrival: Arrival, port: UInt16) -> Bool {
    mutex.withLock {
      guard let index = bindings.firstIndex(where: { $0.port == port }) else {
        if arrival.kind == 1 { counts.closedPort &+= 1 }
        return false
      }
      guard bindings[index].queue.count < Layer.maximumQueued,
        bindings[index].queuedBytes + arrival.data.count <= Layer.maximumQueuedBytes
      else {
        counts.queueFull &+= 1
        return true
      }
      bindings[index].queue.append(arrival)
      bindings[index].queuedBytes += arrival.data.count
      if arrival.kind == 1 { counts.delivered &+= 1 }
      // Signalled under the lock (a kernel call, which calls nothing back): `close` could
      // otherwise release the semaphore in between, and its handle go to the next socket.
      try? bindings[index].arrivals.signal()
      return true
    }
  }

  func error(type: UInt, code: UInt, area: UInt, offset: UInt, length: UInt) {
    // The quoted datagram: its IPv4 header, then our UDP header (source port first).
    guard type == 3, let quoted = areas.view(area: area, offset: offset, length: length), quoted.count >= 28
    else {
      return
    }
    let headerLength = Int(quoted[0] & 0x0F) * 4
    guard headerLength >= 20, quoted.count >= headerLength + 4 else { return }
    mutex.withLock { counts.errorsIn &+= 1 }
    let ourPort = UInt16(quoted[headerLength]) << 8 | UInt16(quoted[headerLength + 1])
    let theirPort = UInt16(quoted[headerLength + 2]) << 8 | UInt16(quoted[headerLength + 3])
    let arrival = Arrival(
      address: IPv4Address(quoted, at: IPv4Packet.Offset.destination).value, port: theirPort,
      kind: code == 3 ? 2 : 3, data: [])
    _ = enqueue(arrival, port: ourPort)
  }

  // MARK: For sockets

  /// Sends `data` from `sourcePort` to `port` of `address`; whether it went.
  func send(from sourcePort: UInt16, to address: UInt, port: UInt, data: UnsafeRawBufferPointer) -> Bool {
    guard port >= 1, port <= 0xFFFF, data.count <= Layer.maximumData else { return false }
    let destination = IPv4Address(value: UInt32(truncatingIfNeeded: address))
    let source = IPv4Address(value: UInt32(truncatingIfNeeded: (try? Required.ip.address()) ?? 0))
    guard source != .unspecified || destination == .broadcast else { return false }
    let total = UdpDatagram.headerLength + data.count
    /// The datagram, header and data, written from the start of `datagram`.
    func write(into datagram: UnsafeMutableRawBufferPointer) {
      if !data.isEmpty {
        (datagram.baseAddress! + UdpDatagram.headerLength).copyMemory(
          from: data.baseAddress!, byteCount: data.count)
      }
      UdpDatagram.emit(
        into: datagram, sourcePort: sourcePort, destinationPort: UInt16(port), payloadLength: data.count,
        source: source, destination: destination)
    }
    var sent = false
    if total <= 1480 {
      guard let buffer = try? Required.ip.allocate(), buffer != 0,
        let datagram = areas.sendBuffer(buffer, from: PacketAreas.ipv4PayloadOffset)
      else { return false }
      write(into: datagram)
      sent =
        (try? Required.ip.send(
          buffer: buffer, length: UInt(total), destination: address, number: UInt(IPv4Packet.udp),
          checksums: 0)) == 1
    } else {
      var whole = [UInt8](repeating: 0, count: total)
      whole.withUnsafeMutableBytes { write(into: $0) }
      sent =
        whole.withUnsafeBytes {
          try? Required.ip.sendLarge(destination: address, number: UInt(IPv4Packet.udp), payload: $0)
        } == 1
    }
    if sent { mutex.withLock { counts.sent &+= 1 } }
    return sent
  }

  /// The next arrival for `port`, if one is queued.
  func take(port: UInt16) -> Arrival? {
    mutex.withLock {
      guard let index = bindings.firstIndex(where: { $0.port == port }), !bindings[index].queue.isEmpty else {
        return nil
      }
      let arrival = bindings[index].queue.removeFirst()
      bindings[index].queuedBytes -= arrival.data.count
      return arrival
    }
  }

  func close(port: UInt16) {
    let arrivals: Semaphore? = mutex.withLock {
      guard let index = bindings.firstIndex(where: { $0.port == port }) else { return nil }
      return bindings.remove(at: index).arrivals
    }
    _ = arrivals?.release()
  }
}

/// One socket: a port of the layer's, until the last reference goes.
final class Socket: UdpSocketImplementation {
  private let layer: Layer
  private let boundPort: UInt16
  private let arrivals: Semaphore

  init(layer: Layer, port: UInt16, arrivals: Semaphore) {
    self.layer = layer
    boundPort = port
    self.arrivals = arrivals
  }

  deinit { layer.close(port: boundPort) }

  func port() -> UInt { UInt(boundPort) }

  func sendTo(address: UInt, port: UInt, data: UnsafeRawBufferPointer) -> UInt {
    layer.send(from: boundPort, to: address, port: port, data: data) ? 1 : 0
  }

  func receive(sender: UnsafeMutableRawBufferPointer, data: UnsafeMutableRawBufferPointer, milliseconds: UInt)
    -> Int
  {
    for index in 0..<sender.count { sender[index] = 0 }
    guard sender.count >= 7 else { return 0 }
    while true {
      guard (try? arrivals.waitFor(milliseconds: milliseconds)) == 1,
        let arrival = layer.take(port: boundPort)
      else {
        return 0
      }
      guard arrival.data.count <= data.count else {
        layer.mutex.withLock { layer.counts.tooLong &+= 1 }
        continue
      }
      IPv4Address(value: arrival.address).write(to: sender, at: 0)
      store(arrival.port, at: 4, in: sender)
      sender[6] = arrival.kind
      if !arrival.data.isEmpty {
        arrival.data.withUnsafeBytes {
          data.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count)
        }
      }
      return arrival.data.count
    }
  }
}

func start() -> UdpService {
  guard let layer = Layer() else {
    say("udp: the IPv4 layer's buffers could not be mapped")
    fatalError("udp: no buffers")
  }
  guard let receiver = IPv4Receiver.export(layer),
    (try? Required.ip.register(number: UInt(IPv4Packet.udp), receiver: receiver)) == 1
  else {
    say("udp: the IPv4 layer refused to deliver UDP (is another UDP layer registered?)")
    fatalError("udp: not registered")
  }
  _ = receiver.release()
  return UdpService.export(layer)!
}
