// Icmp: see Icmp.server. Message layout is KernelCore's (Icmp.swift, host-tested).
//
// Contract: at most 8 `echo` calls wait at once (more get "could not be sent"); each has
// an identifier of its own, so replies are matched to their caller by identifier and
// sequence number. An echo request is answered from a send buffer (or, if reassembled and
// larger, through sendLarge); requests to a broadcast address are not answered (RFC 1122
// 3.2.2.6 allows that). Errors (destination unreachable, time exceeded, parameter problem,
// source quench) are passed up; one about a waiting echo also ends that echo. Thread-safe:
// one ServerMutex guards the waiting echoes and counters, never held across a call.

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

/// One caller waiting for its echo reply.
struct Waiter {
  var active = false
  var sequence: UInt16 = 0
  var sentAt: UInt = 0
  /// Set when the answer came (the semaphore is signalled after): rtt + 1, or unreachable.
  var answer: UInt = 0
}

final class Layer: EchoImplementation, IPv4ReceiverImplementation {
  static let waiters = 8
  /// Identifiers of this host's echoes: the base plus the waiter's index.
  static let identifierBase: UInt16 = 0x7E50
  static let unreachable: UInt = 0xFFFF_FFFF
  static let notSent: UInt = 0xFFFF_FFFE

  private let areas: PacketAreas
  private let mutex: ServerMutex
  private var waiting = [Waiter](repeating: Waiter(), count: Layer.waiters)
  private let wakeups: [Semaphore]
  private var counts = (
    echoRequestsIn: 0, echoRepliesIn: 0, errorsIn: 0, otherIn: 0, malformed: 0, repliesOut: 0, requestsOut: 0
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
    var semaphores: [Semaphore] = []
    for _ in 0..<Layer.waiters {
      guard let semaphore = try? Required.sync.makeSemaphore(count: 0) else { return nil }
      semaphores.append(semaphore)
    }
    wakeups = semaphores
    self.areas = areas
    mutex = ServerMutex(sleep: { try? lock.wait() }, wake: { try? lock.signal() })
  }

  private func now() -> UInt { (try? Required.clock.uptimeMilliseconds()) ?? 0 }

  // MARK: Echo

  func echo(destination: UInt, sequence: UInt, size: UInt, milliseconds: UInt) -> UInt {
    guard size <= 1472 else { return Layer.notSent }
    let index: Int? = mutex.withLock {
      guard let free = waiting.firstIndex(where: { !$0.active }) else { return nil }
      waiting[free] = Waiter(active: true, sequence: UInt16(truncatingIfNeeded: sequence))
      return free
    }
    guard let index else { return Layer.notSent }
    guard let buffer = try? Required.ip.allocate(), buffer != 0,
      let message = areas.sendBuffer(buffer, from: PacketAreas.ipv4PayloadOffset)
    else {
      mutex.withLock { waiting[index].active = false }
      return Layer.notSent
    }
    // The data: a counting pattern, as ping's is.
    let data = UnsafeMutableRawBufferPointer(
      rebasing: message[IcmpMessage.headerLength..<(IcmpMessage.headerLength + Int(size))])
    for offset in 0..<data.count { data[offset] = UInt8(truncatingIfNeeded: offset) }
    let length = IcmpMessage.emitEcho(
      into: message, reply: false, identifier: Layer.identifierBase + UInt16(index),
      sequence: UInt16(truncatingIfNeeded: sequence), data: UnsafeRawBufferPointer(data))!
    mutex.withLock {
      waiting[index].sentAt = now()
      counts.requestsOut &+= 1
    }
    guard
      (try? Required.ip.send(
        buffer: buffer, length: UInt(length), destination: destination, number: UInt(IPv4Packet.icmp),
        checksums: 0))
        == 1
    else {
      mutex.withLock { waiting[index].active = false }
      return Layer.notSent
    }
    let answered = (try? wakeups[index].waitFor(milliseconds: milliseconds)) == 1
    let (answer, late) = mutex.withLock {
      defer { waiting[index] = Waiter() }
      return (waiting[index].answer, !answered && waiting[index].answer != 0)
    }
    // The answer came as the time ran out: its signal is on its way; take it, so the
    // next echo with this waiter does not find it.
    if late { try? wakeups[index].wait() }
    return answer
  }

  /// Records `answer` for the waiter of `identifier` and `sequence` and wakes it.
  private func answer(identifier: UInt16, sequence: UInt16, with answer: (UInt) -> UInt) {
    guard identifier >= Layer.identifierBase, identifier < Layer.identifierBase + UInt16(Layer.waiters) else {
      return
    }
    let index = Int(identifier - Layer.identifierBase)
    let wake = mutex.withLock {
      guard waiting[index].active, waiting[index].answer == 0, waiting[index].sequence == sequence else {
        return false
      }
      waiting[index].answer = answer(waiting[index].sentAt)
      return true
    }
    if wake { try? wakeups[index].signal() }
  }

  func counters(text: UnsafeMutableRawBufferPointer) -> Int {
    let copy = mutex.withLock { counts }
    var writer = TextWriter(text)
    writer.line(
      "icmp: in: echo requests \(copy.echoRequestsIn), echo replies \(copy.echoRepliesIn), errors \(copy.errorsIn), other \(copy.otherIn), malformed \(copy.malformed)"
    )
    writer.line("icmp: out: echo requests \(copy.requestsOut), echo replies \(copy.repliesOut)")
    return writer.finish()
  }

  // MARK: IPv4Receiver

  func receive(area: UInt, header: UInt, payload: UInt, length: UInt) {
    guard let headerBytes = areas.view(area: area, offset: header, length: 20),
      let bytes = areas.view(area: area, offset: payload, length: length)
    else { return }
    let message: IcmpMessage
    do throws(PacketError) {
      message = try IcmpMessage(bytes)
    } catch {
      mutex.withLock { counts.malformed &+= 1 }
      return
    }
    let source = IPv4Address(headerBytes, at: IPv4Packet.Offset.source)
    let destination = IPv4Address(headerBytes, at: IPv4Packet.Offset.destination)
    switch message.type {
    case IcmpMessage.echoRequest:
      mutex.withLock { counts.echoRequestsIn &+= 1 }
      guard destination.value == UInt32(truncatingIfNeeded: (try? Required.ip.address()) ?? 0) else { return }
      reply(to: message, from: source)
    case IcmpMessage.echoReply:
      mutex.withLock { counts.echoRepliesIn &+= 1 }
      let time = now()
      answer(identifier: message.identifier, sequence: message.sequence) { sentAt in (time &- sentAt) &+ 1 }
    case IcmpMessage.destinationUnreachable, IcmpMessage.timeExceeded, 4, 12:
      // The quoted datagram (header and at least 8 bytes) follows the 8-byte header.
      mutex.withLock { counts.errorsIn &+= 1 }
      guard length >= UInt(IcmpMessage.headerLength + 28) else { return }
      try? Required.ip.passError(
        type: UInt(message.type), code: UInt(message.code), area: area,
        offset: payload + UInt(IcmpMessage.headerLength),
        length: length - UInt(IcmpMessage.headerLength))
    default:
      mutex.withLock { counts.otherIn &+= 1 }
    }
  }

  /// Answers an echo request with the same identifier, sequence number and data.
  private func reply(to request: IcmpMessage, from source: IPv4Address) {
    let data = request.body
    if IcmpMessage.headerLength + data.count <= 1480 {
      guard let buffer = try? Required.ip.allocate(), buffer != 0,
        let message = areas.sendBuffer(buffer, from: PacketAreas.ipv4PayloadOffset)
      else { return }
      let length = IcmpMessage.emitEcho(
        into: message, reply: true, identifier: request.identifier, sequence: request.sequence, data: data)!
      _ = try? Required.ip.send(
        buffer: buffer, length: UInt(length), destination: UInt(source.value), number: UInt(IPv4Packet.icmp),
        checksums: 0)
    } else {
      // A reassembled request: the reply is fragmented too.
      guard IcmpMessage.headerLength + data.count <= 8208 else { return }
      var whole = [UInt8](repeating: 0, count: IcmpMessage.headerLength + data.count)
      _ = whole.withUnsafeMutableBytes {
        IcmpMessage.emitEcho(
          into: $0, reply: true, identifier: request.identifier, sequence: request.sequence, data: data)
      }
      _ = whole.withUnsafeBytes {
        try? Required.ip.sendLarge(
          destination: UInt(source.value), number: UInt(IPv4Packet.icmp), payload: $0)
      }
    }
    mutex.withLock { counts.repliesOut &+= 1 }
  }

  func error(type: UInt, code: UInt, area: UInt, offset: UInt, length: UInt) {
    // An error about one of our echo requests: the quoted ICMP header names it.
    guard type == UInt(IcmpMessage.destinationUnreachable) || type == UInt(IcmpMessage.timeExceeded),
      let quoted = areas.view(area: area, offset: offset, length: length), quoted.count >= 28
    else { return }
    let headerLength = Int(quoted[0] & 0x0F) * 4
    guard headerLength >= 20, quoted.count >= headerLength + 8,
      quoted[headerLength] == IcmpMessage.echoRequest
    else {
      return
    }
    let identifier = UInt16(quoted[headerLength + 4]) << 8 | UInt16(quoted[headerLength + 5])
    let sequence = UInt16(quoted[headerLength + 6]) << 8 | UInt16(quoted[headerLength + 7])
    answer(identifier: identifier, sequence: sequence) { _ in Layer.unreachable }
  }
}

func start() -> Echo {
  guard let layer = Layer() else {
    say("icmp: the IPv4 layer's buffers could not be mapped")
    fatalError("icmp: no buffers")
  }
  guard let receiver = IPv4Receiver.export(layer),
    (try? Required.ip.register(number: UInt(IPv4Packet.icmp), receiver: receiver)) == 1
  else {
    say("icmp: the IPv4 layer refused to deliver ICMP (is another ICMP layer registered?)")
    fatalError("icmp: not registered")
  }
  _ = receiver.release()
  return Echo.export(layer)!
}
