// Echo: see Echo.server. One thread serves both ports and every connection on them, never
// blocking on any one connection: reads and writes are made with a 0 ms timeout after the
// shared semaphore said something changed.
//
// Contract: at most 128 connections at once (later ones wait in the listeners' backlogs);
// an echo connection holds at most 16 KiB read and not yet written back (beyond, it is
// not read until the peer takes its echo); a connection is closed once the peer closed
// and everything was echoed, when nothing moved on it for 30 s (300 s while its peer
// does not take its echo), or dropped when it ends otherwise.

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

/// One connection being served.
struct Client {
  let stream: TcpStream
  /// Echo (true) or discard.
  let echoes: Bool
  /// Read and not yet written back (a fixed ring: the heap holds every client's).
  var pending = ByteQueue(capacity: Service.maximumPending)
  /// When a byte last moved (milliseconds since boot).
  var lastActivity: UInt
}

final class Service: NetworkApplicationImplementation, RunnableImplementation {
  static let echoPort: UInt = 7
  static let discardPort: UInt = 9
  static let maximumClients = 128
  /// 128 clients x 16 KiB = 2 MiB of the 4 MiB heap at most (an attack review exhausted
  /// the heap with 48 clients that sent and never read, when each held up to 140 KiB).
  static let maximumPending = 16 * 1024
  /// A connection that moves nothing for this long is closed (milliseconds): idle ones
  /// once held the table's every entry for as long as their peer liked. One whose echo
  /// the peer does not take gets longer: a lossy link's retransmissions back off for long.
  static let idleTimeout: UInt = 30_000
  static let stalledTimeout: UInt = 300_000

  let changed: Semaphore
  let echo: TcpListener
  let discard: TcpListener
  var clients: [Client] = []
  var counts: (accepted: UInt64, echoed: UInt64, discarded: UInt64) = (0, 0, 0)
  /// Where reads land: one buffer for every connection (one thread serves them all). 4 KiB,
  /// about what a read finds (a segment or two): the kernel clears a call's out-block
  /// before the call, and clearing 16 KiB for each 1,460-byte segment was an eighth of
  /// the stack's instructions per byte received.
  let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)

  init?() {
    guard let changed = try? Required.sync.makeSemaphore(count: 0),
      let echo = (try? Required.tcp.listen(port: Service.echoPort, backlog: 64)) ?? nil,
      let discard = (try? Required.tcp.listen(port: Service.discardPort, backlog: 64)) ?? nil
    else { return nil }
    self.changed = changed
    self.echo = echo
    self.discard = discard
    _ = try? echo.watch(semaphore: changed)
    _ = try? discard.watch(semaphore: changed)
  }

  func run() {
    while true {
      _ = try? changed.waitFor(milliseconds: 1000)
      let now = (try? Required.clock.uptimeMilliseconds()) ?? 0
      acceptWaiting(now: now)
      var index = clients.count - 1
      while index >= 0 {
        if !serve(&clients[index], now: now) {
          _ = clients[index].stream.release()
          clients.remove(at: index)
          // The last one gone, the storage goes too: the heap is back to its base.
          if clients.isEmpty { clients = [] }
        }
        index -= 1
      }
    }
  }

  private func acceptWaiting(now: UInt) {
    for (listener, echoes) in [(echo, true), (discard, false)] {
      while clients.count < Service.maximumClients,
        let stream = (try? listener.accept(milliseconds: 0)) ?? nil
      {
        _ = try? stream.watch(semaphore: changed)
        clients.append(Client(stream: stream, echoes: echoes, lastActivity: now))
        counts.accepted &+= 1
      }
    }
  }

  /// Moves what can move on `client` without waiting; false once it is done with (or
  /// idle too long).
  private func serve(_ client: inout Client, now: UInt) -> Bool {
    var moved = false
    while true {
      if flush(&client) { moved = true }
      // Read no more than the ring can take: what is not read waits in TCP's window.
      let room = client.echoes ? client.pending.room : buffer.count
      guard room > 0 else { break }
      let count =
        (try? client.stream.read(
          data: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<min(room, buffer.count)]), milliseconds: 0))
        ?? 0
      guard count > 0 else { break }
      moved = true
      if client.echoes {
        client.pending.append(contentsOf: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        counts.echoed &+= UInt64(count)
      } else {
        counts.discarded &+= UInt64(count)
      }
    }
    if moved {
      client.lastActivity = now
    } else if now &- client.lastActivity
      >= (client.pending.isEmpty ? Service.idleTimeout : Service.stalledTimeout)
    {
      return false
    }
    let status = (try? client.stream.status()) ?? 8
    if status & 8 != 0 { return false }  // reset or aborted: nothing more will move
    // The peer is done and everything it sent was echoed: close our side too.
    if status & 4 != 0 && status & 2 == 0 && client.pending.isEmpty { return false }
    return true
  }

  /// Writes what is pending; whether anything was written.
  @discardableResult
  private func flush(_ client: inout Client) -> Bool {
    var moved = false
    while !client.pending.isEmpty {
      let piece = client.pending.peek(from: 0, count: min(client.pending.count, 16384))
      let taken = piece.withUnsafeBytes { (try? client.stream.write(data: $0, milliseconds: 0)) ?? 0 }
      // The count comes from another server: clamped, never a trapping Int().
      let written = min(Int(truncatingIfNeeded: taken), piece.count)
      guard written > 0 else { return moved }
      client.pending.removeFirst(written)
      moved = true
    }
    return moved
  }

  func counters(text: UnsafeMutableRawBufferPointer) -> Int {
    var writer = TextWriter(text)
    writer.line(
      "echo: ports \(Service.echoPort) (echo) and \(Service.discardPort) (discard); \(clients.count) connections, \(counts.accepted) accepted; \(counts.echoed) bytes echoed, \(counts.discarded) discarded"
    )
    return writer.finish()
  }
}

func start() -> NetworkApplication {
  guard let service = Service() else {
    say("echo: ports 7 and 9 could not be listened on")
    fatalError("echo: no listeners")
  }
  guard let work = Runnable.export(service), (try? Required.threads.spawn(work: work, priority: 2)) ?? 0 != 0
  else {
    say("echo: no thread could be started")
    fatalError("echo: no thread")
  }
  _ = work.release()
  say("echo: serving echo on port 7 and discard on port 9")
  return NetworkApplication.export(service)!
}
