// TcpSimulationTests: two TcpConnections over a simulated link that loses, duplicates,
// reorders and delays segments (seeded), on a virtual clock: every run's data must arrive
// intact both ways and both ends must reach CLOSED. Thousands of runs take seconds.

import KernelCore
import Testing

/// One simulated connection between `a` (the active opener) and `b` (the listener).
struct Simulation {
  var random: SeededRandom
  let lossPercent: Int
  var a: TcpConnection
  var b: TcpConnection
  var now: UInt64 = 0
  /// Segments on the wire: when they arrive, and whether they go to b.
  var flight: [(at: UInt64, toB: Bool, segment: OutgoingSegment)] = []
  var sentByA: [UInt8]
  var sentByB: [UInt8]
  var receivedByA: [UInt8] = []
  var receivedByB: [UInt8] = []
  var offsetA = 0
  var offsetB = 0
  var aClosed = false
  var bClosed = false
  var bHeardFin = false

  init(seed: UInt64, lossPercent: Int, bytesA: Int, bytesB: Int) {
    random = SeededRandom(state: seed)
    self.lossPercent = lossPercent
    a = TcpConnection(
      initialSequence: SequenceNumber(UInt32(truncatingIfNeeded: random.next())), maximumSegment: 536)
    b = TcpConnection(
      initialSequence: SequenceNumber(UInt32(truncatingIfNeeded: random.next())), maximumSegment: 1460)
    var data = SeededRandom(state: seed &* 31)
    sentByA = (0..<bytesA).map { _ in UInt8(truncatingIfNeeded: data.next()) }
    sentByB = (0..<bytesB).map { _ in UInt8(truncatingIfNeeded: data.next()) }
  }

  /// Puts what `connection` queued on the wire: lost, duplicated or delayed at random.
  mutating func transmit(fromA: Bool) {
    let segments = fromA ? a.outgoing : b.outgoing
    if fromA { a.outgoing = [] } else { b.outgoing = [] }
    for segment in segments {
      if random.chance(lossPercent) { continue }
      let copies = random.chance(lossPercent) ? 2 : 1
      for _ in 0..<copies {
        // 5-40 ms: later segments can overtake earlier ones (reordering).
        flight.append((now + 5 + random.next() % 36, fromA, segment))
      }
    }
  }

  mutating func deliver(_ segment: OutgoingSegment, toB: Bool) {
    if toB {
      b.receive(
        sequence: segment.sequence, acknowledgment: segment.acknowledgment, flags: segment.flags,
        window: segment.window, maximumSegmentSize: segment.maximumSegmentSize, payload: segment.payload,
        now: now)
    } else {
      a.receive(
        sequence: segment.sequence, acknowledgment: segment.acknowledgment, flags: segment.flags,
        window: segment.window, maximumSegmentSize: segment.maximumSegmentSize, payload: segment.payload,
        now: now)
    }
  }

  /// Runs until both ends are closed or `limit` ms pass; whether they closed.
  mutating func run(limit: UInt64 = 600_000) -> Bool {
    b.listen()
    a.open(now: now)
    while now < limit {
      // The applications: write what fits, read everything, close when done.
      if offsetA < sentByA.count {
        offsetA += a.send(Array(sentByA[offsetA..<min(offsetA + 4096, sentByA.count)]), now: now)
      }
      if offsetB < sentByB.count && b.state != .listen && b.state != .synReceived {
        offsetB += b.send(Array(sentByB[offsetB..<min(offsetB + 4096, sentByB.count)]), now: now)
      }
      receivedByA += a.read(65_536)
      receivedByB += b.read(65_536)
      if offsetA == sentByA.count && a.state == .established { a.close(now: now) }
      if b.events.contains(.peerClosed) { bHeardFin = true }
      if bHeardFin && offsetB == sentByB.count && b.state == .closeWait { b.close(now: now) }
      if a.events.contains(.closed) { aClosed = true }
      if b.events.contains(.closed) { bClosed = true }
      a.events = []
      b.events = []
      if aClosed && bClosed { return true }
      transmit(fromA: true)
      transmit(fromA: false)
      now += 5
      let due = flight.filter { $0.at <= now }
      flight.removeAll { $0.at <= now }
      for (_, toB, segment) in due.sorted(by: { $0.at < $1.at }) { deliver(segment, toB: toB) }
      a.tick(now: now)
      b.tick(now: now)
    }
    return false
  }
}

@Suite struct TcpSimulationTests {
  @Test(arguments: [0, 1, 5])
  func dataArrivesIntactAndBothEndsClose(lossPercent: Int) {
    var failures: [String] = []
    var retransmissions = 0
    var fastRetransmissions = 0
    let runs = lossPercent == 0 ? 200 : 1_000
    for seed in 1...UInt64(runs) {
      var simulation = Simulation(
        seed: seed &* 0x9E37_79B9 &+ UInt64(lossPercent), lossPercent: lossPercent,
        bytesA: Int(seed % 7) * 3_000 + 1, bytesB: Int(seed % 5) * 2_000)
      let closed = simulation.run()
      retransmissions += simulation.a.retransmissions + simulation.b.retransmissions
      fastRetransmissions += simulation.a.fastRetransmissions + simulation.b.fastRetransmissions
      if !closed || simulation.receivedByB != simulation.sentByA
        || simulation.receivedByA != simulation.sentByB
      {
        failures.append(
          "seed \(seed): closed \(closed) (a \(simulation.a.state), b \(simulation.b.state)), b got \(simulation.receivedByB.count) of \(simulation.sentByA.count), a got \(simulation.receivedByA.count) of \(simulation.sentByB.count)"
        )
      }
      if failures.count >= 5 { break }
    }
    #expect(failures.isEmpty, "\(lossPercent)% loss: \(failures)")
    if lossPercent > 0 { #expect(retransmissions > 0, "losses were recovered by retransmitting") }
    if lossPercent == 5 { #expect(fastRetransmissions > 0, "some losses were repaired on duplicate ACKs") }
  }

  @Test func aResetEndsBothSides() {
    var simulation = Simulation(seed: 7, lossPercent: 0, bytesA: 0, bytesB: 0)
    simulation.b.listen()
    simulation.a.open(now: 0)
    for _ in 0..<4 {
      simulation.transmit(fromA: true)
      simulation.transmit(fromA: false)
      simulation.now += 50
      let due = simulation.flight
      simulation.flight = []
      for (_, toB, segment) in due { simulation.deliver(segment, toB: toB) }
    }
    #expect(simulation.a.state == .established && simulation.b.state == .established)
    simulation.a.abort()
    simulation.transmit(fromA: true)
    for (_, toB, segment) in simulation.flight { simulation.deliver(segment, toB: toB) }
    #expect(simulation.a.state == .closed && simulation.b.state == .closed)
    #expect(simulation.b.events.contains(.reset))
  }
}
