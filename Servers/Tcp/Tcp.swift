// Tcp: see Tcp.server. One connection's protocol (states, retransmission, congestion
// control) is KernelCore's TcpConnection, host-tested and simulated; this server keeps
// the table of connections, turns segments into calls on them, and sends what they say.
//
// Contract: at most 256 connections (TIME-WAIT and those not yet accepted included) and
// 16 listeners. A listener holds at most its backlog of connections set up and not
// accepted (a SYN beyond is dropped: the peer sends it again) and 64 handshakes in
// progress; a SYN beyond those, or when the table or the buffer budget is full, is
// answered with a SYN cookie and no state (TcpSynCookies), so a SYN flood costs at most
// 64 table entries per listener and no buffers. All connections' rings together stay
// within `bufferBudget` (half the heap), which keeps 2 KiB each way for every entry the
// table could still take, so the budget runs out only with the table.
// Segments to no connection and no listener get a RST (RFC 9293 3.10.7.1). One thread
// ticks every connection's timers every 20 ms (every 250 ms while there is none).
// Thread-safe: one ServerMutex guards the table and counters; it is never held across a
// call to another server except the kernel's clock and semaphore signals, which call
// nothing back.

import KernelCore
import ServerRuntime
import TesseraABI

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

/// A connection's addresses and ports, seen from this host.
struct Endpoints: Equatable {
  var localAddress: IPv4Address
  var localPort: UInt16
  var remoteAddress: IPv4Address
  var remotePort: UInt16
}

/// Who holds a connection.
struct Holder: Equatable {
  let value: UInt8
  /// A listener set it up; it waits in the listener's queue (or is still in its handshake).
  static let listener = Holder(value: 0)
  /// A TcpStream refers to it.
  static let stream = Holder(value: 1)
  /// Its stream went: the layer finishes the close alone and forgets it once closed.
  static let released = Holder(value: 2)
}

/// One connection in the table.
struct Entry {
  /// Unique for the layer's lifetime: streams and listener queues name entries by it.
  let number: UInt32
  let endpoints: Endpoints
  var connection: TcpConnection
  var holder: Holder
  /// The listener that set it up (0: an active open).
  let listener: UInt32
  /// Threads waiting in read, write or connect, and the semaphore they sleep on.
  var waiting = 0
  var wake: Semaphore?
  /// The application's readiness semaphore, and whether it was signalled since the
  /// application last looked at this stream.
  var watcher: Semaphore?
  var watcherSignalled = false
  /// The connection completed its handshake, or ended (reset, refused, timed out).
  var connected = false
  var ended = false
  var segmentsIn = 0
  var segmentsOut = 0
  /// Retransmissions already added to the layer's total.
  var retransmissionsCounted = 0
  var sendQueuedBefore = 0
}

/// One listening port.
struct ListenerEntry {
  let number: UInt32
  let port: UInt16
  let backlog: Int
  /// Connections set up and not accepted, oldest first.
  var ready: [UInt32] = []
  var waiting = 0
  let wake: Semaphore
  var watcher: Semaphore?
  var watcherSignalled = false
}

/// A segment to send, with where it goes.
struct Outbound {
  let endpoints: Endpoints
  let segment: OutgoingSegment
}

final class Layer: TcpServiceImplementation, IPv4ReceiverImplementation, RunnableImplementation {
  static let maximumConnections = 256
  static let maximumListeners = 16
  static let maximumBacklog = 64
  /// Handshakes in progress with state per listener (SYN-RECEIVED), apart from the
  /// backlog; beyond, SYN cookies.
  static let maximumHandshakes = 64
  static let tick: UInt = 20
  static let idleTick: UInt = 250
  /// Bytes all connections' send and receive rings may take together: half of a
  /// kernel-mode server's 4 MiB heap (an attack review filled the heap with 32 connections
  /// of 128 KiB each and the layer trapped).
  static let bufferBudget = 2 * 1024 * 1024
  /// The smallest ring each way, kept in the budget for every entry of the table.
  static let minimumBuffer = 2_048

  let areas: PacketAreas
  let mutex: ServerMutex
  var entries: [Entry] = []
  var listeners: [ListenerEntry] = []
  private var nextNumber: UInt32 = 1
  private var random = RandomNumbers(seed: tessera_timestamp())
  private let cookies: TcpSynCookies
  private var uptime = Uptime()
  /// A connection closed since the last sweep.
  private var sweepDue = false
  var counts = (
    segmentsIn: 0, segmentsOut: 0, retransmissions: 0, resetsIn: 0, resetsOut: 0, opened: 0, accepted: 0,
    malformed: 0, notForUs: 0, closedPort: 0, backlogFull: 0, tableFull: 0, noBuffer: 0, noMemory: 0,
    cookiesSent: 0, cookiesAccepted: 0
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
    cookies = TcpSynCookies(secret: random.next(stirring: tessera_timestamp()))
  }

  /// Milliseconds since boot, never wrapping.
  func now() -> UInt64 { mutex.withLock { clock() } }

  /// Milliseconds since boot, read holding the lock (a kernel call, which calls nothing
  /// back): every locked section acts at the time it runs, not at a time read before it
  /// waited for the lock or slept.
  private func clock() -> UInt64 {
    uptime.extend(UInt32(truncatingIfNeeded: (try? Required.clock.uptimeMilliseconds()) ?? 0))
  }

  // MARK: The table (callers hold the mutex)

  func index(of number: UInt32) -> Int? { entries.firstIndex { $0.number == number } }

  func listenerIndex(of number: UInt32) -> Int? { listeners.firstIndex { $0.number == number } }

  private func takeNumber() -> UInt32 {
    let number = nextNumber
    nextNumber = nextNumber == UInt32.max ? 1 : nextNumber + 1
    return number
  }

  /// Each direction's buffer for a new connection: 64 KiB while fewer than 4 are open,
  /// 16 KiB while fewer than 20, then 4 KiB, and smaller still (down to 2 KiB) if the
  /// budget the open connections leave (their rings are allocated with their first data,
  /// but the budget counts them whole) does not hold the pair. `minimumBuffer` each way
  /// stays reserved for every entry the table could still take, so the budget runs out
  /// only with the table (100 connections at once once found it empty at about 40: the
  /// later ones' handshakes ended as cookies whose ACKs found no room and were reset).
  /// A few connections get room for speed; many share the rest.
  private func bufferSize() -> Int? {
    // Handshakes count at the size their SYN-ACK offered (counted as nothing, many
    // completing at once took more than the budget). A SYN flood cannot use up what real
    // connections need: every entry has its minimum reserved.
    let reserved = entries.reduce(0) { $0 + 2 * $1.connection.bufferCapacity }
    let others = max(0, Layer.maximumConnections - entries.count - 1) * 2 * Layer.minimumBuffer
    let largest = entries.count < 4 ? 65_535 : entries.count < 20 ? 16_384 : 4_096
    for size in [65_535, 32_768, 16_384, 8_192, 4_096, Layer.minimumBuffer]
    where size <= largest && 2 * size <= Layer.bufferBudget - reserved - others {
      return size
    }
    counts.noMemory &+= 1
    return nil
  }

  /// A random initial sequence number (RFC 6528 asks for one no one can predict).
  private func initialSequence() -> SequenceNumber {
    SequenceNumber(UInt32(truncatingIfNeeded: random.next(stirring: tessera_timestamp()) >> 32))
  }

  /// Takes what entry `index`'s connection produced: segments into `out`, events into the
  /// entry's flags, the listener's queue and wake-ups.
  func settle(_ index: Int, into out: inout [Outbound]) {
    var notify = false
    for segment in entries[index].connection.outgoing {
      out.append(Outbound(endpoints: entries[index].endpoints, segment: segment))
      if segment.flags.contains(.rst) { counts.resetsOut &+= 1 }
    }
    entries[index].segmentsOut &+= entries[index].connection.outgoing.count
    counts.segmentsOut &+= entries[index].connection.outgoing.count
    entries[index].connection.outgoing.removeAll()
    for event in entries[index].connection.events {
      notify = true
      if event == .connected {
        entries[index].connected = true
        if entries[index].holder == .listener, let listener = listenerIndex(of: entries[index].listener) {
          listeners[listener].ready.append(entries[index].number)
          wakeListener(listener)
        }
      } else if event == .reset || event == .closed {
        entries[index].ended = true
      }
    }
    entries[index].connection.events.removeAll()
    let retransmissions = entries[index].connection.retransmissions
    counts.retransmissions &+= retransmissions &- entries[index].retransmissionsCounted
    entries[index].retransmissionsCounted = retransmissions
    // Room to write opened up: writers and watchers hear it.
    let queued = entries[index].connection.sendQueued
    if queued < entries[index].sendQueuedBefore { notify = true }
    entries[index].sendQueuedBefore = queued
    // Nobody will read what still comes after a stream went: drop it, keeping the window open.
    if entries[index].holder == .released && entries[index].connection.readable > 0 {
      _ = entries[index].connection.read(entries[index].connection.readable)
    }
    if notify { wakeStream(index) }
    if entries[index].connection.state == .closed { sweepDue = true }
  }

  /// Wakes entry `index`'s waiting threads and signals its watcher (once until it looks).
  func wakeStream(_ index: Int) {
    // Every waiter: after a reset or close nothing more would wake the others.
    for _ in 0..<max(entries[index].waiting, 0) { try? entries[index].wake?.signal() }
    if let watcher = entries[index].watcher, !entries[index].watcherSignalled {
      entries[index].watcherSignalled = true
      try? watcher.signal()
    }
  }

  func wakeListener(_ index: Int) {
    for _ in 0..<max(listeners[index].waiting, 0) { try? listeners[index].wake.signal() }
    if let watcher = listeners[index].watcher, !listeners[index].watcherSignalled {
      listeners[index].watcherSignalled = true
      try? watcher.signal()
    }
  }

  /// Forgets connections that are closed and that no stream will ask about; returns the
  /// semaphores they held, to release outside the lock.
  private func sweep() -> [Semaphore] {
    // Only after something closed: this runs on every segment's path.
    guard sweepDue else { return [] }
    sweepDue = false
    var semaphores: [Semaphore] = []
    var index = entries.count - 1
    while index >= 0 {
      let entry = entries[index]
      if entry.connection.state == .closed && entry.holder != .stream {
        if entry.holder == .listener, let listener = listenerIndex(of: entry.listener) {
          listeners[listener].ready.removeAll { $0 == entry.number }
        }
        if let wake = entry.wake { semaphores.append(wake) }
        if let watcher = entry.watcher { semaphores.append(watcher) }
        entries.remove(at: index)
      }
      index -= 1
    }
    // An empty table gives its storage back (a flood grows it to 256 entries): the heap
    // returns to its base whenever no connection is left.
    if entries.isEmpty { entries = [] }
    return semaphores
  }

  /// Runs `body` holding the lock with the time now, forgets closed connections, then
  /// (unlocked) sends the segments `body` collected.
  func locked<Result>(_ body: (inout [Outbound], UInt64) -> Result) -> Result {
    var out: [Outbound] = []
    let (result, semaphores) = mutex.withLock {
      let result = body(&out, clock())
      return (result, sweep())
    }
    for semaphore in semaphores { _ = semaphore.release() }
    transmit(out)
    return result
  }

  /// Writes and sends each segment through the IPv4 layer.
  func transmit(_ out: [Outbound]) {
    for item in out {
      let segment = item.segment
      var options = TcpSegment.Options()
      options.maximumSegmentSize = segment.maximumSegmentSize
      options.windowScale = segment.windowScale
      let headerLength = TcpSegment.headerLength(options: options)
      guard let buffer = try? Required.ip.allocate(), buffer != 0,
        let space = areas.sendBuffer(buffer, from: PacketAreas.ipv4PayloadOffset)
      else {
        mutex.withLock { counts.noBuffer &+= 1 }
        continue
      }
      guard headerLength + segment.payload.count <= min(space.count, 1480) else {
        _ = try? Required.ip.free(buffer: buffer)
        continue
      }
      if !segment.payload.isEmpty {
        segment.payload.withUnsafeBytes {
          (space.baseAddress! + headerLength).copyMemory(from: $0.baseAddress!, byteCount: $0.count)
        }
      }
      let length = TcpSegment.emit(
        into: space, sourcePort: item.endpoints.localPort, destinationPort: item.endpoints.remotePort,
        sequence: segment.sequence, acknowledgment: segment.acknowledgment, flags: segment.flags,
        window: segment.window, options: options, payloadLength: segment.payload.count,
        source: item.endpoints.localAddress, destination: item.endpoints.remoteAddress)
      _ = try? Required.ip.send(
        buffer: buffer, length: UInt(length), destination: UInt(item.endpoints.remoteAddress.value),
        number: UInt(IPv4Packet.tcp), checksums: 0)
    }
  }

  // MARK: IPv4Receiver

  func receive(area: UInt, header: UInt, payload: UInt, length: UInt) {
    guard let headerBytes = areas.view(area: area, offset: header, length: 20),
      let bytes = areas.view(area: area, offset: payload, length: length)
    else { return }
    let source = IPv4Address(headerBytes, at: IPv4Packet.Offset.source)
    let destination = IPv4Address(headerBytes, at: IPv4Packet.Offset.destination)
    guard let segment = try? TcpSegment(bytes, source: source, destination: destination) else {
      mutex.withLock {
        counts.segmentsIn &+= 1
        counts.malformed &+= 1
      }
      return
    }
    let delivered: Bool = locked { out, time in
      counts.segmentsIn &+= 1
      if segment.flags.contains(.rst) { counts.resetsIn &+= 1 }
      guard
        let index = entries.firstIndex(where: {
          $0.endpoints.localPort == segment.destinationPort && $0.endpoints.remotePort == segment.sourcePort
            && $0.endpoints.remoteAddress == source && $0.endpoints.localAddress == destination
        })
      else { return false }
      entries[index].segmentsIn &+= 1
      entries[index].connection.receive(segment, now: time)
      settle(index, into: &out)
      return true
    }
    if delivered { return }
    // No connection: a SYN for a listener opens one; anything else but a RST is answered
    // with one. Only segments addressed to this host itself (not a broadcast) count.
    let ours = UInt32(truncatingIfNeeded: (try? Required.ip.address()) ?? 0)
    guard ours != 0, destination.value == ours, source != .broadcast, source != .unspecified else {
      mutex.withLock { counts.notForUs &+= 1 }
      return
    }
    let flags = segment.flags
    locked { out, time in
      if flags.contains(.syn) && !flags.contains(.ack) && !flags.contains(.rst),
        let listener = listeners.firstIndex(where: { $0.port == segment.destinationPort })
      {
        admit(segment, from: source, to: destination, listener: listener, now: time, into: &out)
        return
      }
      if flags.contains(.ack) && !flags.contains(.syn) && !flags.contains(.rst),
        let listener = listeners.firstIndex(where: { $0.port == segment.destinationPort }),
        completeCookie(segment, from: source, to: destination, listener: listener, now: time, into: &out)
      {
        return
      }
      counts.closedPort &+= 1
      guard
        let reset = OutgoingSegment.reset(
          answering: segment.sequence, acknowledgment: segment.acknowledgment, flags: flags,
          length: segment.sequenceLength)
      else { return }
      let endpoints = Endpoints(
        localAddress: destination, localPort: segment.destinationPort, remoteAddress: source,
        remotePort: segment.sourcePort)
      out.append(Outbound(endpoints: endpoints, segment: reset))
      counts.resetsOut &+= 1
      counts.segmentsOut &+= 1
    }
  }

  /// A SYN for listener `listener`: a new connection in its handshake, within the backlog
  /// and the table's bound.
  private func admit(
    _ segment: TcpSegment, from source: IPv4Address, to destination: IPv4Address, listener: Int, now: UInt64,
    into out: inout [Outbound]
  ) {
    let owner = listeners[listener].number
    // The application is behind: connections it has not accepted fill the backlog. Drop
    // the SYN (the peer sends it again), as Linux does.
    if listeners[listener].ready.count >= listeners[listener].backlog {
      counts.backlogFull &+= 1
      return
    }
    let endpoints = Endpoints(
      localAddress: destination, localPort: segment.destinationPort, remoteAddress: source,
      remotePort: segment.sourcePort)
    // Handshakes in progress are bounded apart: beyond them (a SYN flood) the SYN is
    // answered with a cookie and no state; the ACK that completes it makes the connection.
    let handshakes = entries.reduce(0) {
      $0 + ($1.listener == owner && $1.holder == .listener && $1.connection.state == .synReceived ? 1 : 0)
    }
    // No room for state (handshakes or table full, or no buffer budget): a cookie. The
    // budget is asked only with room in the table (a full table counted as no memory).
    let room = handshakes < Layer.maximumHandshakes && entries.count < Layer.maximumConnections
    let size = room ? bufferSize() : nil
    guard room, let size else {
      let cookie = cookies.make(
        local: destination, localPort: segment.destinationPort, remote: source,
        remotePort: segment.sourcePort,
        peerSequence: segment.sequence, maximumSegment: segment.options.maximumSegmentSize, now: now)
      out.append(
        Outbound(
          endpoints: endpoints,
          segment: OutgoingSegment(
            sequence: cookie, acknowledgment: segment.sequence + 1, flags: .syn | .ack,
            window: UInt16(size ?? 4_096), maximumSegmentSize: 1460)))
      counts.segmentsOut &+= 1
      counts.cookiesSent &+= 1
      return
    }
    var connection = TcpConnection(initialSequence: initialSequence(), bufferSize: size)
    connection.listen()
    connection.receive(segment, now: now)
    entries.append(
      Entry(
        number: takeNumber(), endpoints: endpoints, connection: connection, holder: .listener,
        listener: owner,
        segmentsIn: 1))
    settle(entries.count - 1, into: &out)
  }

  /// An ACK for a listener's port and no connection: if it acknowledges a SYN cookie, the
  /// connection is made (and takes the ACK, and any data with it); false if not.
  private func completeCookie(
    _ segment: TcpSegment, from source: IPv4Address, to destination: IPv4Address, listener: Int, now: UInt64,
    into out: inout [Outbound]
  ) -> Bool {
    guard
      let size = cookies.check(
        local: destination, localPort: segment.destinationPort, remote: source,
        remotePort: segment.sourcePort,
        sequence: segment.sequence, acknowledgment: segment.acknowledgment, now: now)
    else { return false }
    // The application is behind, or the table is full: as for a SYN, the ACK is dropped
    // (the peer sends data or its ACK again, and the cookie holds for a minute or more).
    guard listeners[listener].ready.count < listeners[listener].backlog else {
      counts.backlogFull &+= 1
      return true
    }
    guard entries.count < Layer.maximumConnections else {
      counts.tableFull &+= 1
      return true
    }
    guard let buffers = bufferSize() else { return true }
    var connection = TcpConnection(
      cookie: segment.acknowledgment + UInt32.max, peerSequence: segment.sequence + UInt32.max,
      peerMaximumSegment: size, bufferSize: buffers)
    connection.receive(segment, now: now)
    entries.append(
      Entry(
        number: takeNumber(),
        endpoints: Endpoints(
          localAddress: destination, localPort: segment.destinationPort, remoteAddress: source,
          remotePort: segment.sourcePort), connection: connection, holder: .listener,
        listener: listeners[listener].number, segmentsIn: 1))
    counts.cookiesAccepted &+= 1
    settle(entries.count - 1, into: &out)
    return true
  }

  func error(type: UInt, code: UInt, area: UInt, offset: UInt, length: UInt) {
    // ICMP errors are soft for TCP (RFC 1122 4.2.3.9): retransmission decides.
  }

  // MARK: Timers

  func run() {
    while true {
      // With no connection there is nothing to time: look four times a second only (a new
      // connection's first timeout is a second away).
      let idle = mutex.withLock { entries.isEmpty }
      try? Required.clock.sleep(milliseconds: idle ? Layer.idleTick : Layer.tick)
      locked { out, time in
        for index in entries.indices {
          entries[index].connection.tick(now: time)
          settle(index, into: &out)
        }
      }
    }
  }

  // MARK: TcpService

  func listen(port: UInt, backlog: UInt) -> TcpListener? {
    guard port >= 1, port <= 0xFFFF, backlog >= 1, backlog <= UInt(Layer.maximumBacklog),
      let wake = try? Required.sync.makeSemaphore(count: 0)
    else { return nil }
    let number: UInt32? = mutex.withLock {
      guard listeners.count < Layer.maximumListeners, !listeners.contains(where: { $0.port == UInt16(port) })
      else { return nil }
      let number = takeNumber()
      listeners.append(ListenerEntry(number: number, port: UInt16(port), backlog: Int(backlog), wake: wake))
      return number
    }
    guard let number else {
      _ = wake.release()
      return nil
    }
    return TcpListener.export(Listener(layer: self, number: number, port: UInt16(port)))
  }

  func connect(address: UInt, port: UInt, milliseconds: UInt) -> TcpStream? {
    let remote = IPv4Address(value: UInt32(truncatingIfNeeded: address))
    let local = IPv4Address(value: UInt32(truncatingIfNeeded: (try? Required.ip.address()) ?? 0))
    guard port >= 1, port <= 0xFFFF, remote != .unspecified, remote != .broadcast, local != .unspecified,
      let wake = try? Required.sync.makeSemaphore(count: 0)
    else { return nil }
    let number: UInt32? = locked { out, time in
      guard entries.count < Layer.maximumConnections, let localPort = ephemeralPort(), let size = bufferSize()
      else { return nil }
      var connection = TcpConnection(initialSequence: initialSequence(), bufferSize: size)
      connection.open(now: time)
      let endpoints = Endpoints(
        localAddress: local, localPort: localPort, remoteAddress: remote, remotePort: UInt16(port))
      let number = takeNumber()
      entries.append(
        Entry(
          number: number, endpoints: endpoints, connection: connection, holder: .stream, listener: 0,
          wake: wake))
      counts.opened &+= 1
      settle(entries.count - 1, into: &out)
      return number
    }
    guard let number else {
      _ = wake.release()
      return nil
    }
    let stream = Stream(layer: self, number: number)
    _ = wait(for: number, milliseconds: milliseconds) { entry, _ in
      entry.connected || entry.ended ? true : nil
    }
    return TcpStream.export(stream)
  }

  /// A free local port from 49,152 up (RFC 6335), from a random start (RFC 6056).
  private func ephemeralPort() -> UInt16? {
    let start = UInt16(truncatingIfNeeded: random.next(stirring: tessera_timestamp()) >> 50)  // 0..<16384
    for step in 0..<UInt16(16384) {
      let candidate = 49152 + (start &+ step) % 16384
      if !entries.contains(where: { $0.endpoints.localPort == candidate })
        && !listeners.contains(where: { $0.port == candidate })
      {
        return candidate
      }
    }
    return nil
  }

  func counters(text: UnsafeMutableRawBufferPointer) -> Int {
    let (copy, open, listening) = mutex.withLock { (counts, entries.count, listeners.count) }
    var writer = TextWriter(text)
    writer.line(
      "tcp: segments in \(copy.segmentsIn), out \(copy.segmentsOut), retransmitted \(copy.retransmissions); resets in \(copy.resetsIn), out \(copy.resetsOut)"
    )
    writer.line(
      "tcp: connections \(open), listeners \(listening); opened \(copy.opened), accepted \(copy.accepted)"
    )
    writer.line(
      "tcp: dropped: malformed \(copy.malformed), not for us \(copy.notForUs), closed port \(copy.closedPort), backlog full \(copy.backlogFull), table full \(copy.tableFull), no send buffer \(copy.noBuffer), no buffer memory \(copy.noMemory); SYN cookies sent \(copy.cookiesSent), accepted \(copy.cookiesAccepted)"
    )
    return writer.finish()
  }

  func connections(text: UnsafeMutableRawBufferPointer) -> Int {
    var writer = TextWriter(text)
    mutex.withLock {
      for listener in listeners {
        writer.line("*:\(listener.port) LISTEN backlog \(listener.ready.count)/\(listener.backlog)")
      }
      for entry in entries {
        let endpoints = entry.endpoints
        let connection = entry.connection
        writer.line(
          "\(endpoints.localAddress):\(endpoints.localPort) \(endpoints.remoteAddress):\(endpoints.remotePort) \(connection.state.name) recv-q \(connection.readable) send-q \(connection.sendQueued) segments in \(entry.segmentsIn) out \(entry.segmentsOut) retransmitted \(connection.retransmissions)"
        )
      }
    }
    return writer.finish()
  }

  // MARK: For streams and listeners

  /// Calls `attempt` on entry `number` under the lock until it gives a result, sleeping
  /// on the entry's semaphore between tries for up to `milliseconds` in all; nil if the
  /// time ran out or the entry is gone.
  func wait<Result>(
    for number: UInt32, milliseconds: UInt, _ attempt: (inout Entry, UInt64) -> Result?
  ) -> Result? {
    let deadline = now() + UInt64(milliseconds)
    while true {
      let (result, semaphore): (Result?, Semaphore?) = locked { out, time in
        guard let index = index(of: number) else { return (nil, nil) }
        if let result = attempt(&entries[index], time) {
          settle(index, into: &out)
          return (result, nil)
        }
        guard let wake = entries[index].wake else { return (nil, nil) }
        entries[index].waiting += 1
        return (nil, wake)
      }
      if let result { return result }
      guard let semaphore else { return nil }
      let time = now()
      let left = deadline > time ? UInt(truncatingIfNeeded: deadline - time) : 0
      _ = try? semaphore.waitFor(milliseconds: left)
      mutex.withLock {
        if let index = index(of: number) { entries[index].waiting -= 1 }
      }
      if left == 0 {
        // One last look (a wake-up may have raced the timeout), without sleeping.
        return locked { out, time in
          guard let index = index(of: number), let result = attempt(&entries[index], time) else { return nil }
          settle(index, into: &out)
          return result
        }
      }
    }
  }

  /// Applies `change` to entry `number` under the lock (with the time now) and sends what
  /// follows.
  func update<Result>(_ number: UInt32, _ change: (inout Entry, UInt64) -> Result) -> Result? {
    locked { out, time in
      guard let index = index(of: number) else { return nil }
      let result = change(&entries[index], time)
      settle(index, into: &out)
      return result
    }
  }

  /// The stream of entry `number` went: close it (abort if data was left unread, as RFC
  /// 2525 2.17 asks) and let the layer finish alone.
  func release(_ number: UInt32) {
    let semaphores: [Semaphore] = locked { out, time in
      guard let index = index(of: number) else { return [] }
      entries[index].holder = .released
      entries[index].connection.orphan()
      if entries[index].connection.readable > 0 {
        entries[index].connection.abort()
      } else {
        entries[index].connection.close(now: time)
      }
      let semaphores = [entries[index].wake, entries[index].watcher].compactMap { $0 }
      entries[index].wake = nil
      entries[index].watcher = nil
      settle(index, into: &out)
      return semaphores
    }
    for semaphore in semaphores { _ = semaphore.release() }
  }

  /// Listener `number` went: its port is free, and connections it did not hand out are reset.
  func closeListener(_ number: UInt32) {
    let semaphores: [Semaphore] = locked { out, _ in
      guard let listener = listenerIndex(of: number) else { return [] }
      let removed = listeners.remove(at: listener)
      for index in entries.indices
      where entries[index].listener == number && entries[index].holder == .listener {
        entries[index].holder = .released
        entries[index].connection.abort()
        settle(index, into: &out)
      }
      return [removed.wake, removed.watcher].compactMap { $0 }
    }
    for semaphore in semaphores { _ = semaphore.release() }
  }

  /// A connection listener `number` set up, waiting up to `milliseconds` for one.
  func accept(_ number: UInt32, milliseconds: UInt) -> UInt32? {
    let deadline = now() + UInt64(milliseconds)
    while true {
      let (taken, semaphore): (UInt32?, Semaphore?) = mutex.withLock {
        guard let listener = listenerIndex(of: number) else { return (nil, nil) }
        listeners[listener].watcherSignalled = false
        if !listeners[listener].ready.isEmpty {
          let taken = listeners[listener].ready.removeFirst()
          if listeners[listener].ready.isEmpty { listeners[listener].ready = [] }
          if let index = index(of: taken) {
            entries[index].holder = .stream
            counts.accepted &+= 1
          }
          return (taken, nil)
        }
        listeners[listener].waiting += 1
        return (nil, listeners[listener].wake)
      }
      if let taken { return taken }
      guard let semaphore else { return nil }
      let time = now()
      let left = deadline > time ? UInt(truncatingIfNeeded: deadline - time) : 0
      let woken = (try? semaphore.waitFor(milliseconds: left)) == 1
      mutex.withLock {
        if let listener = listenerIndex(of: number) { listeners[listener].waiting -= 1 }
      }
      if !woken && left == 0 { return nil }
      if !woken && now() >= deadline { return nil }
    }
  }

  /// Gives a stream taken from a listener its semaphore.
  func equip(_ number: UInt32) -> Bool {
    guard let wake = try? Required.sync.makeSemaphore(count: 0) else { return false }
    let taken: Bool = mutex.withLock {
      guard let index = index(of: number), entries[index].wake == nil else { return false }
      entries[index].wake = wake
      return true
    }
    if !taken { _ = wake.release() }
    return taken
  }

  /// Makes `semaphore` (acquired for the layer) entry `number`'s watcher, releasing the one before.
  func watchStream(_ number: UInt32, semaphore: Semaphore) {
    let previous: Semaphore? = mutex.withLock {
      guard let index = index(of: number) else { return semaphore }
      let previous = entries[index].watcher
      entries[index].watcher = semaphore
      entries[index].watcherSignalled = false
      wakeStream(index)  // whatever holds already is news
      return previous
    }
    _ = previous?.release()
  }

  /// Makes `semaphore` (acquired for the layer) listener `number`'s watcher.
  func watchListener(_ number: UInt32, semaphore: Semaphore) {
    let previous: Semaphore? = mutex.withLock {
      guard let listener = listenerIndex(of: number) else { return semaphore }
      let previous = listeners[listener].watcher
      listeners[listener].watcher = semaphore
      listeners[listener].watcherSignalled = false
      // Connections already waiting count as news.
      if !listeners[listener].ready.isEmpty { wakeListener(listener) }
      return previous
    }
    _ = previous?.release()
  }
}

/// A listening port, until the last reference goes.
final class Listener: TcpListenerImplementation {
  private let layer: Layer
  private let number: UInt32
  private let boundPort: UInt16

  init(layer: Layer, number: UInt32, port: UInt16) {
    self.layer = layer
    self.number = number
    boundPort = port
  }

  deinit { layer.closeListener(number) }

  func port() -> UInt { UInt(boundPort) }

  func accept(milliseconds: UInt) -> TcpStream? {
    guard let taken = layer.accept(number, milliseconds: milliseconds) else { return nil }
    guard layer.equip(taken) else {
      layer.release(taken)
      return nil
    }
    return TcpStream.export(Stream(layer: layer, number: taken))
  }

  func watch(semaphore: Semaphore) -> UInt {
    guard (try? semaphore.acquire()) != nil else { return 0 }
    layer.watchListener(number, semaphore: semaphore)
    return 1
  }
}

/// One connection, until the last reference goes (then the layer closes it).
final class Stream: TcpStreamImplementation {
  private let layer: Layer
  private let number: UInt32

  init(layer: Layer, number: UInt32) {
    self.layer = layer
    self.number = number
  }

  deinit { layer.release(number) }

  func status() -> UInt {
    layer.update(number) { entry, _ in
      entry.watcherSignalled = false
      let connection = entry.connection
      let state = connection.state
      var bits: UInt = 0
      if entry.connected { bits |= 1 }
      if connection.readable > 0 { bits |= 2 }
      if connection.peerFinished { bits |= 4 }
      if entry.ended { bits |= 8 }
      if (state == .established || state == .closeWait) && !connection.finQueued && connection.sendRoom > 0 {
        bits |= 16
      }
      if connection.finQueued { bits |= 32 }
      if state == .synSent || state == .synReceived { bits |= 64 }
      return bits
    } ?? 8
  }

  func read(data: UnsafeMutableRawBufferPointer, milliseconds: UInt) -> Int {
    let bytes: [UInt8] =
      layer.wait(for: number, milliseconds: milliseconds) { entry, _ in
        entry.watcherSignalled = false
        if entry.connection.readable > 0 { return entry.connection.read(data.count) }
        if entry.connection.peerFinished || entry.ended { return [] }
        return nil
      } ?? []
    if !bytes.isEmpty {
      bytes.withUnsafeBytes { data.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
    }
    return bytes.count
  }

  func write(data: UnsafeRawBufferPointer, milliseconds: UInt) -> UInt {
    guard !data.isEmpty else { return 0 }
    let bytes = [UInt8](data)
    let taken: Int =
      layer.wait(for: number, milliseconds: milliseconds) { entry, time in
        entry.watcherSignalled = false
        let state = entry.connection.state
        guard (state == .established || state == .closeWait) && !entry.connection.finQueued else { return 0 }
        guard entry.connection.sendRoom > 0 else { return nil }
        return entry.connection.send(bytes, now: time)
      } ?? 0
    return UInt(taken)
  }

  func shutdown() -> UInt {
    return layer.update(number) { entry, time in
      let state = entry.connection.state
      guard
        (state == .established || state == .closeWait || state == .synReceived) && !entry.connection.finQueued
      else { return 0 }
      entry.connection.close(now: time)
      return 1
    } ?? 0
  }

  func abort() -> UInt {
    _ = layer.update(number) { entry, _ in entry.connection.abort() }
    return 1
  }

  func watch(semaphore: Semaphore) -> UInt {
    guard (try? semaphore.acquire()) != nil else { return 0 }
    layer.watchStream(number, semaphore: semaphore)
    return 1
  }

  func endpoints(text: UnsafeMutableRawBufferPointer) -> Int {
    guard text.count >= 8,
      let endpoints = layer.mutex.withLock({ layer.index(of: number).map { layer.entries[$0].endpoints } })
    else { return 0 }
    endpoints.remoteAddress.write(to: text, at: 0)
    store(endpoints.remotePort, at: 4, in: text)
    store(endpoints.localPort, at: 6, in: text)
    return 8
  }
}

func start() -> TcpService {
  guard let layer = Layer() else {
    say("tcp: the IPv4 layer's buffers could not be mapped")
    fatalError("tcp: no buffers")
  }
  guard let receiver = IPv4Receiver.export(layer),
    (try? Required.ip.register(number: UInt(IPv4Packet.tcp), receiver: receiver)) == 1
  else {
    say("tcp: the IPv4 layer refused to deliver TCP (is another TCP layer registered?)")
    fatalError("tcp: not registered")
  }
  _ = receiver.release()
  guard let work = Runnable.export(layer), (try? Required.threads.spawn(work: work, priority: 2)) ?? 0 != 0
  else {
    say("tcp: no timer thread could be started")
    fatalError("tcp: no timer thread")
  }
  _ = work.release()
  return TcpService.export(layer)!
}
