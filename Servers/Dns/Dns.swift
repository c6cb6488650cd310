// Dns: see Dns.server. Message layout and parsing are KernelCore's (Dns.swift,
// host-tested, including answers checked against the question asked).
//
// Contract: each resolve uses a socket of its own on a random port (the UDP layer's) and a
// random identifier (RandomNumbers, stirred with the time-stamp counter), so concurrent
// lookups do not mix and an off-path forger must guess both (RFC 5452); 3 tries, 2 s apart;
// answers are cached for their time to live (at most a day; 16 names, the one expiring
// first goes). An ICMP error ends a lookup only if it names the server's port 53.
// Thread-safe: one ServerMutex guards the server address, cache and the random numbers,
// never held across a call.

import KernelCore
import ServerRuntime
import TesseraABI

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

struct CacheEntry {
  var name: [UInt8]
  var address: IPv4Address
  /// Uptime in milliseconds when it expires.
  var expires: UInt
}

final class Lookup: ResolverImplementation {
  static let noServer: UInt = 0
  static let noAnswer: UInt = 1
  static let noSuchName: UInt = 2
  static let noAddress: UInt = 3
  static let malformedName: UInt = 4
  static let serverFailed: UInt = 5
  static let cacheSize = 16

  private let mutex: ServerMutex
  private var dnsServer = IPv4Address.unspecified
  private var cached: [CacheEntry] = []
  private var random: RandomNumbers

  init?() {
    guard let lock = try? Required.sync.makeSemaphore(count: 0) else { return nil }
    mutex = ServerMutex(sleep: { try? lock.wait() }, wake: { try? lock.signal() })
    random = RandomNumbers(seed: tessera_timestamp())
  }

  private func now() -> UInt { (try? Required.clock.uptimeMilliseconds()) ?? 0 }

  /// Letters in lower case, and without a final dot: the cache's form of a name.
  private func canonical(_ name: UnsafeRawBufferPointer) -> [UInt8] {
    var bytes = name.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
    if bytes.last == UInt8(ascii: ".") { bytes.removeLast() }
    return bytes
  }

  func resolve(name: UnsafeRawBufferPointer) -> UInt {
    if let address = IPv4Address(parsing: name.bindMemory(to: UInt8.self)) { return UInt(address.value) }
    let key = canonical(name)
    let time = now()
    let (server, hit, first) = mutex.withLock {
      cached.removeAll { time &- $0.expires < 0x8000_0000 }  // expired (uptime wraps after 49 days)
      let identifier = UInt16(truncatingIfNeeded: random.next(stirring: tessera_timestamp()) >> 17)
      return (dnsServer, cached.first(where: { $0.name == key })?.address, identifier)
    }
    if let hit { return UInt(hit.value) }
    guard server != .unspecified else { return Lookup.noServer }
    var query = [UInt8](repeating: 0, count: 12 + 256 + 4)
    guard
      let queryLength = query.withUnsafeMutableBytes({
        DnsQuery.emit(into: $0, identifier: first, name: name)
      })
    else { return Lookup.malformedName }
    guard let socket = (try? Required.udp.openSocket(port: 0)) ?? nil else { return Lookup.noAnswer }
    defer { _ = socket.release() }
    var answer = [UInt8](repeating: 0, count: 1500)
    var sender = [UInt8](repeating: 0, count: 8)
    for _ in 0..<3 {
      let sent = query.withUnsafeBytes {
        try? socket.sendTo(
          address: UInt(server.value), port: UInt(DnsMessage.port),
          data: UnsafeRawBufferPointer(rebasing: $0[0..<queryLength]))
      }
      guard sent == 1 else { return Lookup.noAnswer }
      let deadline = now() &+ 2000
      while true {
        let left = deadline &- now()
        guard left < 0x8000_0000, left > 0 else { break }
        let count = sender.withUnsafeMutableBytes { senderBytes in
          answer.withUnsafeMutableBytes {
            (try? socket.receive(sender: senderBytes, data: $0, milliseconds: left)) ?? 0
          }
        }
        guard sender[6] != 0 else { break }  // the time ran out
        // Only the server's answer to this query counts; anything else is ignored.
        let fromServer =
          IPv4Address(sender.withUnsafeBytes { $0 }, at: 0) == server && sender[4] == 0 && sender[5] == 53
        guard sender[6] == 1, fromServer else {
          // Nothing listens on the server's port 53 (an error about another address or
          // port is someone else's business, or forged).
          if sender[6] == 2 && fromServer { return Lookup.noAnswer }
          continue
        }
        let response = answer.withUnsafeBytes { bytes in
          query.withUnsafeBytes { asked in
            try? DnsResponse(
              UnsafeRawBufferPointer(rebasing: bytes[0..<count]), identifier: first,
              query: UnsafeRawBufferPointer(rebasing: asked[0..<queryLength]))
          }
        }
        guard let response else { continue }
        if response.responseCode == 3 { return Lookup.noSuchName }
        guard response.responseCode == 0 else { return Lookup.serverFailed }
        guard let record = response.addresses.first else { return Lookup.noAddress }
        let expires = now() &+ UInt(record.timeToLive) * 1000
        mutex.withLock {
          cached.removeAll { $0.name == key }
          if cached.count >= Lookup.cacheSize,
            let soonest = cached.indices.min(by: { cached[$0].expires < cached[$1].expires })
          {
            cached.remove(at: soonest)
          }
          if record.timeToLive > 0 {
            cached.append(CacheEntry(name: key, address: record.address, expires: expires))
          }
        }
        return UInt(record.address.value)
      }
    }
    return Lookup.noAnswer
  }

  func setServer(address: UInt) -> UInt {
    mutex.withLock {
      dnsServer = IPv4Address(value: UInt32(truncatingIfNeeded: address))
      cached = []
    }
    return 1
  }

  func currentServer() -> UInt { mutex.withLock { UInt(dnsServer.value) } }

  func cache(text: UnsafeMutableRawBufferPointer) -> Int {
    let time = now()
    let (server, entries) = mutex.withLock { (dnsServer, cached) }
    var writer = TextWriter(text)
    writer.line("server \(server)")
    for entry in entries {
      let seconds = entry.expires &- time < 0x8000_0000 ? (entry.expires &- time) / 1000 : 0
      entry.name.withUnsafeBufferPointer { name in
        writer.line("\(text: name)  \(entry.address)  \(seconds) s")
      }
    }
    return writer.finish()
  }
}

/// The composition's setting `name` for this instance (empty if none).
func setting(_ name: StaticString) -> [UInt8] {
  ServerRuntime.setting(name) { name, value throws(CallError) in
    try Required.settings.value(name: name, value: value)
  }
}

func start() -> Resolver {
  guard let lookup = Lookup() else {
    say("dns: no semaphore for its lock")
    fatalError("dns: no lock")
  }
  let server = setting("server")
  if !server.isEmpty {
    guard let address = server.withUnsafeBufferPointer({ IPv4Address(parsing: $0) }) else {
      say("dns: the setting `server` must be an IPv4 address (a.b.c.d)")
      fatalError("dns: bad setting")
    }
    _ = lookup.setServer(address: UInt(address.value))
  }
  return Resolver.export(lookup)!
}
