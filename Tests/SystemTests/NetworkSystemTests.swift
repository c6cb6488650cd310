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
  var failure: String?
}

/// The sessions, written by the peer's thread and read once it has signalled.
private final class Sessions: @unchecked Sendable {
  var list: [Session] = []
}

@Suite struct NetworkSystemTests {
  static let framesPerSession = 500

  @Test func framesOfRandomSizesComeBackIntactAndInOrder() throws {
    let guestPort = UInt16(30_000 + Int(getpid() % 10_000))
    let peerPort = guestPort &+ 10_000
    let peer = try #require(DatagramPeer(port: peerPort), "no UDP socket on port \(peerPort)")
    let me: [UInt8] = [0x02, 0, 0, 0, 0, 0x01]
    let sessions = Sessions()
    let done = DispatchSemaphore(value: 0)
    let worker = Thread {
      // Sizes and bytes from a seeded xorshift, so a failure can be replayed.
      var state: UInt64 = 0x9E37_79B9_7F4A_7C15
      func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
      }
      for _ in 0..<2 {
        var session = Session()
        // The echo's broadcast HELLO says where it is.
        guard let hello = peer.receive(seconds: 60), hello.count >= 14 else {
          session.failure = "no HELLO from the guest"
          sessions.list.append(session)
          break
        }
        let guest = Array(hello[6..<12])
        for index in 0..<Self.framesPerSession {
          let size = 60 + Int(next() % UInt64(1514 - 60 + 1))
          var frame = guest + me + [0x88, 0xB5] + withUnsafeBytes(of: UInt32(index).bigEndian, Array.init)
          while frame.count < size { frame.append(UInt8(truncatingIfNeeded: next())) }
          peer.send(frame, to: guestPort)
          guard let back = peer.receive(seconds: 10) else {
            session.failure = "frame \(index) (\(size) bytes) did not come back"
            break
          }
          guard back.count == frame.count, Array(back[0..<6]) == me, Array(back[6..<12]) == guest,
            Array(back[12...]) == Array(frame[12...])
          else {
            session.failure = "frame \(index) (\(size) bytes) came back as \(back.count) different bytes"
            break
          }
          session.echoed += 1
        }
        peer.send(
          guest + me + [0x88, 0xB5] + Array("STOP".utf8) + [UInt8](repeating: 0, count: 42), to: guestPort)
        sessions.list.append(session)
      }
      done.signal()
    }
    worker.start()
    let result = try bootComposition(
      "systems/tests/network-echo.system", test: "framesOfRandomSizesComeBackIntactAndInOrder",
      until: "composition done",
      arguments: [
        "-netdev",
        "dgram,id=net0,local.type=inet,local.host=127.0.0.1,local.port=\(guestPort),remote.type=inet,remote.host=127.0.0.1,remote.port=\(peerPort)",
        "-device", "rtl8139,netdev=net0",
      ])
    #expect(done.wait(timeout: .now() + 30) == .success, "the peer did not finish")
    #expect(sessions.list.count == 2, "\(result.tail(20))")
    for (index, session) in sessions.list.enumerated() {
      #expect(
        session.failure == nil && session.echoed == Self.framesPerSession, "session \(index): \(session)")
    }
    // The driver's counters: the frames and the STOP in, the HELLO and the echoes out.
    let frames = Self.framesPerSession
    let echoes = result.lines.filter { $0.contains("@@ECHO echoed=") }
    #expect(echoes.count == 2, "\(result.tail(20))")
    for line in echoes {
      #expect(
        line.contains(
          try Regex(
            "echoed=\(frames) frames in \(frames + 1) \\(\\d+ bytes\\), out \(frames + 1) \\(\\d+ bytes\\), errors 0, drops 0"
          )
        ), "\(line)")
    }
    #expect(result.output.contains("rtl8139: ready, MAC 52:54:00:"))
    expectGroupsGiveBack(result, groups: 2)
  }
}
