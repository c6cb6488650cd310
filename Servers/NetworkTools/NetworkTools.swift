// NetworkTools: see NetworkTools.server.
//
// Contract: each command writes whole lines ending in "\r\n" to the terminal, in the forms
// the system tests read: `ping` prints one line per request ("64 bytes from A: icmp_seq=N
// time=T ms", "no reply from A: icmp_seq=N", "A: destination unreachable: icmp_seq=N")
// and a summary ("N packets transmitted, M received"); `nslookup` prints "NAME has address
// A" or "NAME: no address (why)"; `udp` prints "sent N bytes to A:P" and then "reply from
// A:P: TEXT" or "no reply within 2 s"; `get` prints a body of at most 2,048 bytes and then
// "get: HTTP S, N bytes in T ms, sha256 H" or "get: why not". Wrong arguments get the
// usage line. `tcp` may be bound to `none` where there is no TCP layer.

import KernelCore
import ServerRuntime

func send(bytes: UnsafeRawBufferPointer) {
  writeInPieces(bytes, of: 256) { _ = try? Required.terminal.write(data: $0) }
}

/// Writes `message` and a line end.
func line(_ message: KernelMessage) {
  message.withBytes { send(bytes: UnsafeRawBufferPointer($0)) }
  let end: StaticString = "\r\n"
  send(bytes: UnsafeRawBufferPointer(start: end.utf8Start, count: end.utf8CodeUnitCount))
}

/// Writes text whose lines end in "\n" with the terminal's "\r\n".
func text(_ bytes: UnsafeRawBufferPointer) { writeTerminalText(bytes) { send(bytes: $0) } }

struct Tool {
  let name: StaticString
  let arguments: StaticString
  let summary: StaticString
}

let tools: [Tool] = [
  Tool(name: "ifconfig", arguments: "", summary: "address, mask, gateway, DNS, MAC, DHCP and counters"),
  Tool(name: "arp", arguments: "", summary: "the ARP cache"),
  Tool(name: "route", arguments: "", summary: "the routing table"),
  Tool(name: "ping", arguments: "HOST [-c N]", summary: "ICMP echo requests to HOST (a name or address)"),
  Tool(name: "nslookup", arguments: "NAME", summary: "the IPv4 address of NAME, through DNS"),
  Tool(name: "udp", arguments: "HOST PORT TEXT", summary: "send TEXT in a UDP datagram, print the reply"),
  Tool(name: "udpecho", arguments: "PORT [-c N]", summary: "send N datagrams (1) back to their senders"),
  Tool(name: "netstat", arguments: "", summary: "TCP connections and listeners, and TCP's counters"),
  Tool(
    name: "get", arguments: "URL",
    summary: "fetch http://HOST[:PORT]/PATH; print it (if short) and its SHA-256"),
]

func equals(_ word: [UInt8], _ name: StaticString) -> Bool {
  word.elementsEqual(UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
}

/// A decimal number of at most 9 digits, or nil.
func number(_ word: [UInt8]) -> UInt? { decimalNumber(word).map { UInt($0) } }

final class Commands: ShellToolsImplementation {
  let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8192, alignment: 16)
  /// The longest a `get` may take, milliseconds.
  static let getDeadline: UInt = 600_000

  func commands(text: UnsafeMutableRawBufferPointer) -> Int {
    var count = 0
    for tool in tools {
      for part in [tool.name, tool.arguments, tool.summary].enumerated() {
        let bytes = UnsafeBufferPointer(start: part.element.utf8Start, count: part.element.utf8CodeUnitCount)
        guard count + bytes.count + 1 <= text.count else { return count }
        for byte in bytes {
          text[count] = byte
          count += 1
        }
        text[count] = part.offset < 2 ? UInt8(ascii: "\t") : UInt8(ascii: "\n")
        count += 1
      }
    }
    return count
  }

  func run(line input: UnsafeRawBufferPointer) -> UInt {
    let words = input.split(separator: UInt8(ascii: " ")).map { Array($0) }
    guard let first = words.first else { return 0 }
    let name = first.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
    guard let tool = tools.first(where: { equals(name, $0.name) }) else { return 0 }
    let arguments = Array(words.dropFirst())
    switch true {
    case equals(name, "ifconfig") && arguments.isEmpty: ifconfig()
    case equals(name, "arp") && arguments.isEmpty:
      show { (text) throws(CallError) in try Required.arp.entries(text: text) }
    case equals(name, "route") && arguments.isEmpty:
      show { (text) throws(CallError) in try Required.ip.routes(text: text) }
    case equals(name, "ping")
      && (arguments.count == 1 || (arguments.count == 3 && equals(arguments[1], "-c"))):
      guard let count = arguments.count == 3 ? number(arguments[2]) : 4, count >= 1, count <= 1000 else {
        line("ping: -c takes a count from 1 to 1000")
        break
      }
      ping(arguments[0], count: count)
    case equals(name, "nslookup") && arguments.count == 1: nslookup(arguments[0])
    case equals(name, "udp") && arguments.count >= 3:
      guard let port = number(arguments[1]), port >= 1, port <= 65535 else {
        line("udp: PORT must be 1 to 65535")
        break
      }
      // The text is the rest of the line as typed, spaces included.
      udp(arguments[0], port: port, text: rest(of: input, after: 3))
    case equals(name, "udpecho")
      && (arguments.count == 1 || (arguments.count == 3 && equals(arguments[1], "-c"))):
      guard let port = number(arguments[0]), port >= 1, port <= 65535,
        let count = arguments.count == 3 ? number(arguments[2]) : 1, count >= 1
      else {
        line("udpecho: PORT must be 1 to 65535 and N at least 1")
        break
      }
      udpEcho(port: port, count: count)
    case equals(name, "netstat") && arguments.isEmpty: netstat()
    case equals(name, "get") && arguments.count == 1: get(arguments[0])
    default:
      var usage: KernelMessage = "usage: \(tool.name)"
      if tool.arguments.utf8CodeUnitCount > 0 {
        usage.append(" ")
        usage.append(tool.arguments)
      }
      line(usage)
    }
    return 1
  }

  /// What follows the first `count` words of `input` and the space after them.
  private func rest(of input: UnsafeRawBufferPointer, after count: Int) -> [UInt8] {
    var index = 0
    for word in 0..<count {
      while index < input.count && input[index] == UInt8(ascii: " ") { index += 1 }
      while index < input.count && input[index] != UInt8(ascii: " ") { index += 1 }
      if word == count - 1 && index < input.count { index += 1 }
    }
    return Array(input[index...])
  }

  private func show(_ filled: (UnsafeMutableRawBufferPointer) throws(CallError) -> Int) {
    do throws(CallError) {
      // Text blocks are declared at most 2,048 bytes.
      let count = try filled(UnsafeMutableRawBufferPointer(rebasing: buffer[0..<2048]))
      text(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
    } catch {
      line("the network server did not answer: \(error)")
    }
  }

  private func ifconfig() {
    var mac = [UInt8](repeating: 0, count: 6)
    guard (mac.withUnsafeMutableBytes { try? Required.link.macAddress(address: $0) }) == 6,
      let address = try? Required.ip.address(), let length = try? Required.ip.prefixLength(),
      let gateway = try? Required.ip.gateway()
    else {
      line("ifconfig: the network servers did not answer")
      return
    }
    let dns = (try? Required.resolver.currentServer()) ?? 0
    // Words from another server: no conversion that could trap.
    let mask = IPv4Address.mask(prefixLength: Int(truncatingIfNeeded: min(length, 32)))
    line("eth0: MAC \(mac.withUnsafeBytes { MacAddress($0) }) mtu \((try? Required.link.mtu()) ?? 0)")
    if address == 0 {
      line("eth0: no address yet")
    } else {
      line(
        "eth0: inet \(IPv4Address(value: UInt32(truncatingIfNeeded: address))) mask \(IPv4Address(value: mask)) gateway \(IPv4Address(value: UInt32(truncatingIfNeeded: gateway))) dns \(IPv4Address(value: UInt32(truncatingIfNeeded: dns)))"
      )
    }
    // Without a DHCP client (`bind dhcp none`) the call fails: the configuration is static.
    do throws(CallError) {
      let count = try Required.dhcp.describe(text: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<2048]))
      text(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
    } catch {
      line("dhcp: none (static configuration)")
    }
    show { (text) throws(CallError) in try Required.link.counters(text: text) }
    show { (text) throws(CallError) in try Required.ip.counters(text: text) }
    show { (text) throws(CallError) in try Required.icmp.counters(text: text) }
    show { (text) throws(CallError) in try Required.udp.counters(text: text) }
  }

  /// The address of `host` (a dotted address or a name), or nil after saying why not.
  private func resolve(_ host: [UInt8], for command: StaticString) -> IPv4Address? {
    // An address is no name: the resolver's answers under 256 are reasons, not addresses.
    if let address = host.withUnsafeBufferPointer({ IPv4Address(parsing: $0) }) { return address }
    guard host.count <= 253 else {
      line("\(command): a name has at most 253 characters")
      return nil
    }
    let answer = host.withUnsafeBytes { (try? Required.resolver.resolve(name: $0)) ?? 1 }
    guard answer >= 256 else {
      host.withUnsafeBufferPointer {
        line("\(command): \(text: $0): no address (\(Commands.reason(answer)))")
      }
      return nil
    }
    return IPv4Address(value: UInt32(truncatingIfNeeded: answer))
  }

  /// What a resolver's failure value means.
  static func reason(_ value: UInt) -> StaticString {
    switch value {
    case 0: "no DNS server is configured"
    case 1: "no answer in time"
    case 2: "the name does not exist"
    case 3: "the name has no address record"
    case 4: "the name is malformed"
    default: "the DNS server failed or refused"
    }
  }

  private func ping(_ host: [UInt8], count: UInt) {
    guard let target = resolve(host, for: "ping") else { return }
    line("PING \(target): 56 data bytes")
    var received: UInt = 0
    for sequence in 1...count {
      let started = (try? Required.clock.uptimeMilliseconds()) ?? 0
      let result =
        (try? Required.icmp.echo(
          destination: UInt(target.value), sequence: sequence, size: 56, milliseconds: 1000)) ?? 0xFFFF_FFFE
      switch result {
      case 0: line("no reply from \(target): icmp_seq=\(sequence)")
      case 0xFFFF_FFFF: line("\(target): destination unreachable: icmp_seq=\(sequence)")
      case 0xFFFF_FFFE:
        line("ping: could not send to \(target) (no route or no buffer): icmp_seq=\(sequence)")
      default:
        received += 1
        line("64 bytes from \(target): icmp_seq=\(sequence) time=\(result - 1) ms")
      }
      // One request a second, as ping sends them.
      if sequence < count { try? Required.clock.sleepUntil(uptime: started &+ 1000) }
    }
    line("--- \(target) ping statistics ---")
    line("\(count) packets transmitted, \(received) received")
  }

  private func netstat() {
    do throws(CallError) {
      let count = try Required.tcp.connections(text: buffer)
      text(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
    } catch {
      line("netstat: the TCP layer did not answer: \(error)")
      return
    }
    show { (text) throws(CallError) in try Required.tcp.counters(text: text) }
  }

  /// Fetches `address` over HTTP/1.1 (one request, then the connection closes).
  private func get(_ address: [UInt8]) {
    guard let url = HttpUrl(address) else {
      line("get: URL must be http://HOST[:PORT][/PATH]")
      return
    }
    guard let target = resolve(url.host, for: "get") else { return }
    let started = (try? Required.clock.uptimeMilliseconds()) ?? 0
    guard
      let stream =
        (try? Required.tcp.connect(address: UInt(target.value), port: UInt(url.port), milliseconds: 5000))
        ?? nil
    else {
      line("get: no connection could be made (no route, no address yet, or too many connections)")
      return
    }
    defer { _ = stream.release() }
    let status = (try? stream.status()) ?? 8
    guard status & 1 != 0 else {
      line(
        status & 8 != 0
          ? "get: \(target):\(url.port) refused the connection"
          : "get: \(target):\(url.port) did not answer in 5 s")
      return
    }
    var request = ascii("GET ")
    request += url.path
    request += ascii(" HTTP/1.1\r\nHost: ")
    request += url.host
    request += ascii("\r\nUser-Agent: Tessera\r\nConnection: close\r\n\r\n")
    var sent = 0
    while sent < request.count {
      let taken = request.withUnsafeBytes {
        (try? stream.write(data: UnsafeRawBufferPointer(rebasing: $0[sent...]), milliseconds: 5000)) ?? 0
      }
      let moved = min(Int(truncatingIfNeeded: taken), request.count - sent)
      guard moved > 0 else {
        line("get: the request could not be sent")
        return
      }
      sent += moved
    }
    // The head, then the body: its length, or up to the close.
    var received: [UInt8] = []
    var head: HttpResponseHead?
    var shown: [UInt8] = []
    var hash = Sha256()
    // 64 bits: a server may send more than 2 GiB without a length.
    var bodyBytes: UInt64 = 0
    // A read waits up to a minute (a lossy link's retransmissions back off for many
    // seconds; 10 s once cut a transfer short), and the whole body up to ten minutes, so a
    // server trickling bytes cannot hold the shell for ever.
    while true {
      let elapsed = ((try? Required.clock.uptimeMilliseconds()) ?? 0) &- started
      if elapsed >= Self.getDeadline {
        line("get: gave up after \(Self.getDeadline / 1000) s with \(bodyBytes) bytes of the body")
        return
      }
      let wait = min(60_000, Self.getDeadline - elapsed)
      let count = (try? stream.read(data: buffer, milliseconds: wait)) ?? 0
      if count == 0 { break }
      var piece = Array(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
      if head == nil {
        received += piece
        var failure: HttpFailure?
        head = received.withUnsafeBytes { bytes in
          do throws(HttpFailure) { return try HttpResponseHead.parse(bytes) } catch {
            failure = error
            return nil
          }
        }
        if failure != nil {
          line("get: the answer is not HTTP/1.x with a Content-Length or closing body")
          return
        }
        guard let parsed = head else {
          if received.count > 16384 {
            line("get: the answer's head is longer than 16 KiB")
            return
          }
          continue
        }
        piece = Array(received[parsed.headLength...])
      }
      if let length = head?.contentLength, bodyBytes + UInt64(piece.count) > UInt64(length) {
        piece.removeLast(Int(bodyBytes + UInt64(piece.count) - UInt64(length)))
      }
      piece.withUnsafeBytes { hash.add($0) }
      if shown.count < 2049 { shown += piece.prefix(2049 - shown.count) }
      bodyBytes += UInt64(piece.count)
      if let length = head?.contentLength, bodyBytes >= UInt64(length) { break }
    }
    guard let head else {
      line("get: no answer came")
      return
    }
    if let length = head.contentLength, bodyBytes < UInt64(length) {
      line("get: the body ended after \(bodyBytes) of \(length) bytes")
      return
    }
    if shown.count <= 2048 && !shown.isEmpty { shown.withUnsafeBytes { text($0) } }
    if let last = shown.last, last != 10, shown.count <= 2048 { line("") }
    let elapsed = ((try? Required.clock.uptimeMilliseconds()) ?? 0) &- started
    var summary: KernelMessage = "get: HTTP \(head.status), \(bodyBytes) bytes in \(elapsed) ms, sha256 "
    hash.finishHex().withUnsafeBufferPointer { summary.append(text: $0) }
    line(summary)
  }

  private func nslookup(_ name: [UInt8]) {
    guard let address = resolve(name, for: "nslookup") else { return }
    name.withUnsafeBufferPointer { line("\(text: $0) has address \(address)") }
  }

  private func udp(_ host: [UInt8], port: UInt, text message: [UInt8]) {
    guard let target = resolve(host, for: "udp") else { return }
    guard let socket = (try? Required.udp.openSocket(port: 0)) ?? nil else {
      line("udp: no socket (32 are open)")
      return
    }
    defer { _ = socket.release() }
    guard
      (message.withUnsafeBytes { try? socket.sendTo(address: UInt(target.value), port: port, data: $0) }) == 1
    else {
      line("udp: could not send to \(target):\(port) (no route, no buffer, or no address yet)")
      return
    }
    line("sent \(message.count) bytes to \(target):\(port)")
    var sender = [UInt8](repeating: 0, count: 8)
    let count = sender.withUnsafeMutableBytes { senderBytes in
      (try? socket.receive(
        sender: senderBytes, data: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<1024]),
        milliseconds: 2000)) ?? 0
    }
    let from = sender.withUnsafeBytes { IPv4Address($0, at: 0) }
    let fromPort = UInt(sender[4]) << 8 | UInt(sender[5])
    switch sender[6] {
    case 1:
      line(
        "reply from \(from):\(fromPort): \(text: UnsafeBufferPointer(rebasing: buffer.bindMemory(to: UInt8.self)[0..<min(count, 200)]))"
      )
    case 2: line("udp: \(from):\(fromPort): port unreachable")
    case 3: line("udp: \(from): destination unreachable")
    default: line("no reply within 2 s")
    }
  }
}

extension Commands {
  /// Echoes `count` datagrams arriving at `port`, each back to its sender; gives up after
  /// 10 s without one.
  func udpEcho(port: UInt, count: UInt) {
    guard let socket = (try? Required.udp.openSocket(port: port)) ?? nil else {
      line("udpecho: port \(port) is taken (or 32 sockets are open)")
      return
    }
    defer { _ = socket.release() }
    line("udpecho: listening on port \(port)")
    var sender = [UInt8](repeating: 0, count: 8)
    for _ in 0..<count {
      let length = sender.withUnsafeMutableBytes { senderBytes in
        (try? socket.receive(sender: senderBytes, data: buffer, milliseconds: 10_000)) ?? 0
      }
      guard sender[6] == 1 else {
        line("udpecho: nothing within 10 s")
        return
      }
      let from = sender.withUnsafeBytes { IPv4Address($0, at: 0) }
      let fromPort = UInt(sender[4]) << 8 | UInt(sender[5])
      let sent =
        (try? socket.sendTo(
          address: UInt(from.value), port: fromPort,
          data: UnsafeRawBufferPointer(rebasing: buffer[0..<length])))
        == 1
      line(
        sent
          ? "udpecho: echoed \(length) bytes to \(from):\(fromPort)"
          : "udpecho: could not answer \(from):\(fromPort)")
    }
    line("udpecho: done")
  }
}

func start() -> ShellTools { ShellTools.export(Commands())! }
