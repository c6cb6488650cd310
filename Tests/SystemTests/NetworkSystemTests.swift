// NetworkSystemTests: the RTL8139 driver against a peer on the host that nobody here
// wrote the other end of: QEMU's `-netdev dgram` carries each Ethernet frame in a UDP
// datagram between the emulated card and this test's socket. The peer sends frames of
// random sizes (60 to 1,514 bytes, a seeded generator) to the guest's frame echo and
// checks each comes back intact and in order; user-mode driver first, then kernel mode.

import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// A UDP socket on 127.0.0.1 for QEMU's dgram network backend (used by one thread at a time).
private final class DatagramPeer: @unchecked Sendable {
  let descriptor: Int32

  init?(port: UInt16) {
    descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    guard descriptor >= 0 else { return nil }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    guard bound == 0 else {
      close(descriptor)
      return nil
    }
  }

  deinit { close(descriptor) }

  /// The next datagram, or nil after `seconds` without one.
  func receive(seconds: Int) -> [UInt8]? {
    var timeout = timeval(tv_sec: seconds, tv_usec: 0)
    setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var buffer = [UInt8](repeating: 0, count: 2048)
    let count = recv(descriptor, &buffer, buffer.count, 0)
    return count > 0 ? Array(buffer[0..<count]) : nil
  }

  func send(_ bytes: [UInt8], to port: UInt16) {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    _ = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        sendto(descriptor, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
  }
}

/// What the peer saw in one session with the echo.
private struct Session {
  var echoed = 0
  var broadcastsBack = 0
  var floodBack = 0
  var promiscuousBack = 0
  var multicastBack = 0
  var checksummed: [[UInt8]] = []
  var failure: String?
}

/// The sessions, written by the peer's thread and read once it has signalled.
private final class Sessions: @unchecked Sendable {
  var list: [Session] = []
}

/// Frames of seeded random sizes and contents to and from the echo.
private struct Traffic {
  let peer: DatagramPeer
  let guestPort: UInt16
  let me: [UInt8] = [0x02, 0, 0, 0, 0, 0x01]
  var guest: [UInt8] = []
  var sequence = 0
  private var state: UInt64 = 0x9E37_79B9_7F4A_7C15

  init(peer: DatagramPeer, guestPort: UInt16) {
    self.peer = peer
    self.guestPort = guestPort
  }

  private mutating func next() -> UInt64 {
    state ^= state << 13
    state ^= state >> 7
    state ^= state << 17
    return state
  }

  /// Waits for the echo's HELLO (other frames are skipped); whether it came.
  mutating func awaitHello(seconds: Int = 60) -> Bool {
    while let frame = peer.receive(seconds: seconds) {
      if frame.count >= 19, Array(frame[14..<19]) == Array("HELLO".utf8) {
        guest = Array(frame[6..<12])
        return true
      }
    }
    return false
  }

  /// The next test frame (60 to 1,514 bytes, its sequence number first).
  mutating func frame() -> [UInt8] {
    let size = 60 + Int(next() % UInt64(1514 - 60 + 1))
    var frame = guest + me + [0x88, 0xB5] + withUnsafeBytes(of: UInt32(sequence).bigEndian, Array.init)
    sequence += 1
    while frame.count < size { frame.append(UInt8(truncatingIfNeeded: next())) }
    return frame
  }

  /// Echoes of frames sent earlier that arrived late (after a restart, the card may
  /// deliver frames it held while its driver was down).
  var late = 0

  /// Sends `count` frames one at a time, each checked on its way back; nil, or what failed.
  mutating func echo(_ count: Int) -> String? {
    for _ in 0..<count {
      let sent = frame()
      peer.send(sent, to: guestPort)
      var back: [UInt8] = []
      repeat {
        guard let next = peer.receive(seconds: 10) else { return "frame \(sequence - 1) did not come back" }
        back = next
        // An older sequence number: a late echo, not this frame's.
        let number = back.count >= 18 ? back[14..<18].reduce(0) { $0 << 8 | Int($1) } : -1
        if number >= 0 && number < sequence - 1 { late += 1 } else { break }
      } while true
      guard back.count == sent.count, Array(back[0..<6]) == me, Array(back[6..<12]) == guest,
        Array(back[12...]) == Array(sent[12...])
      else { return "frame \(sequence - 1) (\(sent.count) bytes) came back as \(back.count) different bytes" }
    }
    return nil
  }

  /// How many frames come back to us until none has for 2 s.
  func echoesUntilQuiet() -> Int {
    var count = 0
    while let back = peer.receive(seconds: 2) {
      if back.count >= 18, back[0..<6].elementsEqual(me) { count += 1 }
    }
    return count
  }

  /// Waits (up to 5 s between frames) for the echo of the command `word`.
  func awaitEcho(of word: String) {
    let bytes = Array(word.utf8)
    while let back = peer.receive(seconds: 5),
      !(back.count >= 14 + bytes.count && Array(back[14..<(14 + bytes.count)]) == bytes)
    {}
  }

  func command(_ word: String) {
    peer.send(guest + me + [0x88, 0xB5] + Array(word.utf8) + [UInt8](repeating: 0, count: 41), to: guestPort)
  }
}

/// The arguments that give the guest an RTL8139 on a dgram link to `peerPort`.
/// With `capture`, QEMU also writes every frame on the link to that pcap file.
private func rtl8139Link(guestPort: UInt16, peerPort: UInt16, capture: String? = nil) -> [String] {
  var arguments = [
    "-netdev",
    "dgram,id=net0,local.type=inet,local.host=127.0.0.1,local.port=\(guestPort),remote.type=inet,remote.host=127.0.0.1,remote.port=\(peerPort)",
    "-device", "rtl8139,netdev=net0",
    // An e1000 with no link, on the RTL8139's interrupt line: the witness shares it.
    "-device", "e1000",
  ]
  if let capture { arguments += ["-object", "filter-dump,id=dump0,netdev=net0,file=\(capture)"] }
  return arguments
}

/// The frames of a pcap file as QEMU's filter-dump writes it (classic libpcap format,
/// host byte order, whole frames); nil if it is not one.
private func pcapFrames(_ path: String) -> [[UInt8]]? {
  guard let data = FileManager.default.contents(atPath: path), data.count >= 24 else { return nil }
  let bytes = [UInt8](data)
  func word(_ offset: Int) -> Int {
    Int(bytes[offset]) | Int(bytes[offset + 1]) << 8 | Int(bytes[offset + 2]) << 16 | Int(bytes[offset + 3])
      << 24
  }
  guard word(0) == 0xA1B2_C3D4, word(20) == 1 else { return nil }  // microseconds, Ethernet
  var frames: [[UInt8]] = []
  var offset = 24
  while offset + 16 <= bytes.count {
    let length = word(offset + 8)
    guard offset + 16 + length <= bytes.count else { return nil }
    frames.append(Array(bytes[(offset + 16)..<(offset + 16 + length)]))
    offset += 16 + length
  }
  return frames
}

@Suite struct NetworkSystemTests {
  static let framesPerSession = 10_000

  /// C mode: 10,000 frames each way per placement, each checked; then frames to another
  /// address (filtered), to the broadcast address and a listed multicast group (taken and
  /// echoed), IPv4 frames whose checksums the driver fills in, promiscuous mode, a flood.
  @Test func framesOfRandomSizesComeBackIntactAndInOrder() throws {
    // Ports of their own per run and per test (restart: 30000-39999, C+: 40000-49999).
    let checksummed = try echoSessions(
      "systems/tests/network-echo.system", test: "framesOfRandomSizesComeBackIntactAndInOrder",
      guestPort: UInt16(20_000 + Int(getpid() % 5_000)), mode: "C mode")
    #expect(checksummed == Self.expectedChecksummedFrames, "the driver's checksums differ from QEMU's card's")
  }

  /// The same in C+ mode (descriptor rings; the card fills in the checksums).
  @Test func framesComeBackIntactInCPlusModeToo() throws {
    let checksummed = try echoSessions(
      "systems/tests/network-echo-cplus.system", test: "framesComeBackIntactInCPlusModeToo",
      guestPort: UInt16(40_000 + Int(getpid() % 5_000)), mode: "C+ mode")
    #expect(checksummed == Self.expectedChecksummedFrames, "QEMU's card's checksums differ from the driver's")
  }

  /// The IPv4 frames the peer sends with zero checksums (a UDP datagram to port 7 of three
  /// sizes, from 10.0.2.2 to 10.0.2.15), each as it must come back: the checksums filled in
  /// by QEMU's card (C+) or the driver (C) must equal these, computed here independently.
  static let checksumFrames: [[UInt8]] = [18, 200, 1_472].map { payloadLength in
    let total = 20 + 8 + payloadLength
    var packet: [UInt8] = [
      0x45, 0, UInt8(total >> 8), UInt8(total & 0xFF), 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, 10, 0, 2, 2, 10, 0,
      2, 15,
      0x30, 0x39, 0, 7, UInt8((8 + payloadLength) >> 8), UInt8((8 + payloadLength) & 0xFF), 0, 0,
    ]
    packet += (0..<payloadLength).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
    return packet
  }

  static var expectedChecksummedFrames: [[UInt8]] {
    checksumFrames.map { packet in
      var packet = packet
      func sum(_ bytes: ArraySlice<UInt8>, _ initial: Int = 0) -> UInt16 {
        var total = initial
        for (index, byte) in bytes.enumerated() { total += index % 2 == 0 ? Int(byte) << 8 : Int(byte) }
        while total > 0xFFFF { total = (total & 0xFFFF) + (total >> 16) }
        return ~UInt16(total)
      }
      let header = sum(packet[0..<20])
      packet[10] = UInt8(header >> 8)
      packet[11] = UInt8(header & 0xFF)
      let udpLength = packet.count - 20
      let pseudo = 0x0A00 + 0x0202 + 0x0A00 + 0x020F + 17 + udpLength
      var udp = sum(packet[20...], pseudo)
      if udp == 0 { udp = 0xFFFF }
      packet[26] = UInt8(udp >> 8)
      packet[27] = UInt8(udp & 0xFF)
      return packet
    }
  }

  /// Runs the echo composition `system` against the peer (two sessions: user mode, then
  /// kernel mode), checks everything but the checksummed frames, and returns those as they
  /// came back in the first session (the second must be the same).
  func echoSessions(_ system: String, test: String, guestPort: UInt16, mode: String) throws -> [[UInt8]] {
    let peerPort = guestPort &+ 5_000
    let peer = try #require(DatagramPeer(port: peerPort), "no UDP socket on port \(peerPort)")
    let sessions = Sessions()
    let done = DispatchSemaphore(value: 0)
    let worker = Thread {
      defer { done.signal() }
      for _ in 0..<2 {
        var session = Session()
        var traffic = Traffic(peer: peer, guestPort: guestPort)
        guard traffic.awaitHello() else {
          session.failure = "no HELLO from the guest"
          sessions.list.append(session)
          break
        }
        session.failure = traffic.echo(Self.framesPerSession)
        if session.failure == nil { session.echoed = Self.framesPerSession }
        // Ten frames to another station: filtered by the card, none comes back.
        let guest = traffic.guest
        traffic.guest = [0x02, 0, 0, 0, 0, 0x99]
        for _ in 0..<10 { peer.send(traffic.frame(), to: guestPort) }
        // Ten broadcast frames: taken, and echoed to us.
        traffic.guest = [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        for _ in 0..<10 { peer.send(traffic.frame(), to: guestPort) }
        session.broadcastsBack = traffic.echoesUntilQuiet()
        // The listed multicast group is taken, another group (another filter bit) is not.
        traffic.guest = guest
        traffic.command("MULTICAST")
        traffic.awaitEcho(of: "MULTICAST")
        for group in [[0x01, 0x00, 0x5E, 0x00, 0x00, 0x01], [0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB]] as [[UInt8]]
        {
          traffic.guest = group
          for _ in 0..<5 { peer.send(traffic.frame(), to: guestPort) }
        }
        session.multicastBack = traffic.echoesUntilQuiet()
        // IPv4 with zero checksums: back with them filled in.
        traffic.guest = guest
        for packet in Self.checksumFrames {
          peer.send(guest + traffic.me + [0x08, 0x00] + packet, to: guestPort)
          if let back = peer.receive(seconds: 5), back.count >= 14 {
            session.checksummed.append(Array(back[14..<min(back.count, 14 + packet.count)]))
          }
        }
        // Promiscuous: ten more frames to the other station are taken and echoed.
        traffic.command("PROMISC")
        traffic.awaitEcho(of: "PROMISC")
        traffic.guest = [0x02, 0, 0, 0, 0, 0x99]
        for _ in 0..<10 { peer.send(traffic.frame(), to: guestPort) }
        session.promiscuousBack = traffic.echoesUntilQuiet()
        traffic.guest = guest
        // A flood while the echo sleeps: the driver's queue and the card's ring overflow;
        // whatever comes back is counted, and ordinary traffic resumes afterwards.
        traffic.command("SLOW")
        for _ in 0..<300 { peer.send(traffic.frame(), to: guestPort) }
        while peer.receive(seconds: 2) != nil { session.floodBack += 1 }
        if session.failure == nil { session.failure = traffic.echo(100) }
        traffic.command("STOP")
        sessions.list.append(session)
      }
    }
    worker.start()
    let capture = QEMU.root.appendingPathComponent("build/test-logs/\(test).pcap").path
    try? FileManager.default.createDirectory(
      atPath: QEMU.root.appendingPathComponent("build/test-logs").path, withIntermediateDirectories: true)
    try? FileManager.default.removeItem(atPath: capture)
    let result = try bootComposition(
      system, test: test, until: "composition done",
      arguments: rtl8139Link(guestPort: guestPort, peerPort: peerPort, capture: capture))
    #expect(done.wait(timeout: .now() + 30) == .success, "the peer did not finish")
    #expect(sessions.list.count == 2, "\(result.tail(20))")
    for (index, session) in sessions.list.enumerated() {
      #expect(
        session.failure == nil && session.echoed == Self.framesPerSession && session.broadcastsBack == 10
          && session.multicastBack == 5 && session.promiscuousBack == 10 && session.checksummed.count == 3,
        "session \(index): \(session)")
    }
    // The driver's counters add up: every frame the card took was queued or dropped,
    // every echo was sent; the flood made the queue (or the card's ring) overflow, and
    // what was not dropped came back.
    let echoes = result.lines.compactMap {
      $0.firstMatch(
        of:
          /echoed=(\d+) restarts=0 frames in (\d+) \(\d+ bytes\), out (\d+) \(\d+ bytes\), errors 0, drops (\d+), overflows (\d+), missed (\d+)/
      )
    }
    #expect(echoes.count == 2, "\(result.tail(20))")
    for (index, echo) in echoes.enumerated() {
      let (echoed, framesIn, framesOut, drops) = (Int(echo.1)!, Int(echo.2)!, Int(echo.3)!, Int(echo.4)!)
      let session = sessions.list[min(index, sessions.list.count - 1)]
      // In: the frames, 10 broadcasts, MULTICAST and 5 to the group, 3 IPv4, PROMISC (all
      // echoed), 10 to the other station, SLOW, the flood's frames not dropped, 100, STOP.
      #expect(
        echoed == Self.framesPerSession + 10 + 6 + 3 + 1 + 10 + session.floodBack + 100, "\(echo.0)")
      #expect(framesIn == echoed + 2, "\(echo.0)")
      #expect(framesOut == echoed + 1, "\(echo.0): the echoes and the HELLO")
      #expect(drops + Int(echo.5)! > 0 && session.floodBack < 300, "the flood overflowed: \(echo.0)")
      print("network flood (\(mode)) \(index): \(session.floodBack) of 300 came back; \(echo.0)")
    }
    #expect(
      result.lines.filter { $0.contains("rtl8139: ready, MAC 52:54:00:") && $0.hasSuffix(mode) }.count == 2)
    // The witness shared the card's line: it attached beside the driver and was asked at
    // every interrupt, while the driver was served too (the frames came back).
    #expect(result.output.contains("@@IRQ witness lineGiven=true attached=1"))
    let calls = try #require(result.output.firstMatch(of: /@@IRQ witness calls=(\d+)/))
    #expect(Int(calls.1)! > 100, "\(calls.0)")
    expectGroupsGiveBack(result, groups: 2)
    // What left the guest, as QEMU's filter-dump saw it on the link: as many frames as the
    // driver counted out (HELLOs included), none shorter than 60 bytes (the 5-byte HELLO
    // too: the driver pads, the card does not).
    let frames = try #require(pcapFrames(capture), "no capture at \(capture)")
    let sent = frames.filter { $0.count >= 12 && $0[6..<9].elementsEqual([0x52, 0x54, 0x00]) }
    #expect(sent.count == echoes.reduce(0) { $0 + Int($1.3)! }, "frames in \(capture)")
    #expect(sent.allSatisfy { $0.count >= 60 && $0.count <= 1514 }, "\(sent.map(\.count).min() ?? 0) bytes")
    #expect(sent.filter { $0.count == 60 && $0[14..<19].elementsEqual("HELLO".utf8) }.count == 2)
    if sessions.list.count == 2 {
      #expect(
        sessions.list[0].checksummed == sessions.list[1].checksummed, "user and kernel placement differ")
    }
    return sessions.list.first?.checksummed ?? []
  }

  /// The driver faults mid-traffic and is restarted; traffic resumes with the new
  /// instance. A burst sent right after the fault shows how many frames the restart loses.
  @Test func theDriverIsRestartedMidTrafficAndTrafficResumes() throws {
    let guestPort = UInt16(30_000 + Int(getpid() % 5_000))
    let peerPort = guestPort &+ 5_000
    let peer = try #require(DatagramPeer(port: peerPort), "no UDP socket on port \(peerPort)")
    let outcome = RestartOutcome()
    let done = DispatchSemaphore(value: 0)
    let worker = Thread {
      var traffic = Traffic(peer: peer, guestPort: guestPort)
      defer { done.signal() }
      guard traffic.awaitHello() else { return }
      outcome.before = traffic.echo(100)
      traffic.command("FAULT")
      // A burst while the driver is down, more than the card's ring holds: whatever comes
      // back before the new HELLO. (The card then holds frames back until CAPR is
      // written, which the restarted driver once never did: its receiving stalled.)
      for _ in 0..<20 { peer.send(traffic.frame(), to: guestPort) }
      var echoed = 0
      while let frame = peer.receive(seconds: 5) {
        if frame.count >= 19, Array(frame[14..<19]) == Array("HELLO".utf8) {
          outcome.helloAgain = true
          break
        }
        echoed += 1
      }
      outcome.burstEchoed = echoed
      outcome.after = outcome.helloAgain ? traffic.echo(100) : "no HELLO from the restarted driver"
      outcome.burstEchoed += traffic.late
      traffic.command("STOP")
    }
    worker.start()
    let result = try bootComposition(
      "systems/tests/network-restart.system", test: "theDriverIsRestartedMidTrafficAndTrafficResumes",
      until: "composition done", arguments: rtl8139Link(guestPort: guestPort, peerPort: peerPort))
    #expect(done.wait(timeout: .now() + 30) == .success, "the peer did not finish")
    #expect(
      outcome.before == nil && outcome.after == nil,
      "\(String(describing: outcome.before)), \(String(describing: outcome.after))\n\(result.tail(30))")
    #expect(outcome.helloAgain)
    // For the note: how many of the burst's frames the restart lost.
    print("network restart: \(outcome.burstEchoed) of 20 frames sent during the restart came back")
    #expect(result.output.contains("server Rtl8139 stopped: Swift runtime trap"))
    #expect(result.output.contains("system: nic failed; restarting it (restart 1)"))
    #expect(result.lines.filter { $0.contains("rtl8139: ready, MAC 52:54:00:") }.count == 2)
    #expect(result.output.contains("@@ECHO driver restarted; ready again"))
    #expect(result.output.contains(/@@ECHO echoed=\d+ restarts=1 frames in \d+/), "\(result.tail(20))")
    expectGroupsGiveBack(result, groups: 1)
  }
}

/// What the restart test's peer saw.
private final class RestartOutcome: @unchecked Sendable {
  var before: String? = "not run"
  var after: String? = "not run"
  var burstEchoed = -1
  var helloAgain = false
}
