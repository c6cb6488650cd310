// Http: the parts of HTTP/1.1 (RFC 9112) the web server and the shell's `get` need,
// host-tested: a request's head parsed from the bytes received, a response head written,
// a response head read, and an `http://` URL split. Bodies are framed by Content-Length
// only: chunked transfer coding is refused (501) rather than misread.

/// Why a request cannot be served, as the status to answer with.
public struct HttpFailure: Error, Equatable {
  /// The status code (400, 413, 431, 501, 505; a client reading a response: 502).
  public let status: Int
  /// Its reason phrase.
  public let reason: StaticString

  /// A failure answered with `status` and `reason`.
  public init(status: Int, reason: StaticString) {
    self.status = status
    self.reason = reason
  }

  /// Equal statuses are the same failure.
  public static func == (left: HttpFailure, right: HttpFailure) -> Bool { left.status == right.status }
}

/// A request's head: the request line and the headers the server acts on.
public struct HttpRequestHead: Equatable {
  /// The method (`GET`, `PUT`, ...), as sent.
  public var method: [UInt8] = []
  /// The request target (`/files/a.txt`), as sent.
  public var target: [UInt8] = []
  /// 0 for HTTP/1.0, 1 for HTTP/1.1.
  public var minorVersion = 1
  /// The body's length (Content-Length; 0 without one).
  public var contentLength = 0
  /// Whether the connection stays open after the response (HTTP/1.1 unless
  /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
  public var keepAlive = true
  /// Bytes of the head, the blank line included: the body starts there.
  public var headLength = 0

  /// The head at the start of `bytes`, or nil if its blank line has not come yet.
  /// Throws the status to answer with if it is malformed, too long (more than `maximum`
  /// bytes: 431), has a body framed otherwise than by Content-Length (501) or longer than
  /// 999,999,999 bytes (413), or is not HTTP/1.x (505).
  public static func parse(_ bytes: UnsafeRawBufferPointer, maximum: Int = 8192) throws(HttpFailure)
    -> HttpRequestHead?
  {
    guard let end = headEnd(bytes) else {
      if bytes.count > maximum { throw HttpFailure(status: 431, reason: "Request Header Fields Too Large") }
      return nil
    }
    guard end <= maximum else { throw HttpFailure(status: 431, reason: "Request Header Fields Too Large") }
    let lines = splitLines(UnsafeRawBufferPointer(rebasing: bytes[0..<(end - 4)]))
    let bad = HttpFailure(status: 400, reason: "Bad Request")
    guard let requestLine = lines.first, !requestLine.contains(13), !requestLine.contains(10) else {
      throw bad
    }
    let parts = split(requestLine, on: UInt8(ascii: " "))
    guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else { throw bad }
    var head = HttpRequestHead()
    head.method = parts[0]
    head.target = parts[1]
    if parts[2] == ascii("HTTP/1.1") {
      head.minorVersion = 1
    } else if parts[2] == ascii("HTTP/1.0") {
      head.minorVersion = 0
    } else {
      guard parts[2].starts(with: ascii("HTTP/")) else { throw bad }
      throw HttpFailure(status: 505, reason: "HTTP Version Not Supported")
    }
    head.keepAlive = head.minorVersion == 1
    var sawLength = false
    // Strict, as RFC 9112 asks of a server: a bare CR or LF, a folded line, or a name with
    // spaces or control characters is refused, not guessed at (a proxy in front reading it
    // otherwise would see other requests than this server: smuggling).
    for line in lines.dropFirst() {
      guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > 0,
        line[0..<colon].allSatisfy({ $0 > 32 && $0 < 127 }), !line.contains(13), !line.contains(10)
      else { throw bad }
      let name = lowercased(Array(line[0..<colon]))
      let value = trimmed(Array(line[(colon + 1)...]))
      if name == ascii("content-length") {
        // At most 9 digits (under 1 GB): longer is refused as too large, not read (a
        // tenth digit would overflow i686's Int).
        guard !value.isEmpty, value.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { throw bad }
        guard let length = decimalNumber(value) else {
          throw HttpFailure(status: 413, reason: "Content Too Large")
        }
        // Two different lengths are a smuggling attempt (RFC 9112 6.3).
        if sawLength && length != head.contentLength { throw bad }
        head.contentLength = length
        sawLength = true
      } else if name == ascii("transfer-encoding") {
        throw HttpFailure(status: 501, reason: "Not Implemented")
      } else if name == ascii("connection") {
        let token = lowercased(value)
        if token == ascii("close") { head.keepAlive = false }
        if token == ascii("keep-alive") { head.keepAlive = true }
      }
    }
    head.headLength = end
    return head
  }
}

/// A response's head as a client reads it.
public struct HttpResponseHead: Equatable {
  /// The status code.
  public var status = 0
  /// The body's length, if Content-Length gave one (else the body ends with the
  /// connection); a length of more than 9 digits is refused as malformed.
  public var contentLength: Int?
  /// Bytes of the head, the blank line included.
  public var headLength = 0

  /// The head at the start of `bytes`, or nil if its blank line has not come yet; throws
  /// if it is not an HTTP/1.x status line or headers.
  public static func parse(_ bytes: UnsafeRawBufferPointer) throws(HttpFailure) -> HttpResponseHead? {
    guard let end = headEnd(bytes) else { return nil }
    let bad = HttpFailure(status: 502, reason: "Bad Gateway")
    let lines = splitLines(UnsafeRawBufferPointer(rebasing: bytes[0..<(end - 4)]))
    guard let statusLine = lines.first, statusLine.starts(with: ascii("HTTP/1.")), statusLine.count >= 12,
      statusLine[8] == UInt8(ascii: " ")
    else { throw bad }
    guard let status = decimalNumber(statusLine[9..<12]) else { throw bad }
    var head = HttpResponseHead()
    head.status = status
    for line in lines.dropFirst() {
      guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { throw bad }
      let name = lowercased(Array(line[0..<colon]))
      let value = trimmed(Array(line[(colon + 1)...]))
      if name == ascii("content-length") {
        guard let length = decimalNumber(value) else { throw bad }
        head.contentLength = length
      } else if name == ascii("transfer-encoding") {
        throw HttpFailure(status: 501, reason: "Not Implemented")
      }
    }
    head.headLength = end
    return head
  }

  /// A response head: status line, Content-Type, Content-Length, Connection.
  public static func emit(
    status: Int, reason: StaticString, contentType: StaticString, contentLength: Int, keepAlive: Bool
  ) -> [UInt8] {
    var message = KernelMessage()
    message.append("HTTP/1.1 ")
    message.append(decimal: status)
    message.append(" ")
    message.append(reason)
    message.append("\r\nServer: Tessera\r\nContent-Type: ")
    message.append(contentType)
    message.append("\r\nContent-Length: ")
    message.append(decimal: contentLength)
    message.append(keepAlive ? "\r\nConnection: keep-alive\r\n\r\n" : "\r\nConnection: close\r\n\r\n")
    return message.withBytes { Array($0) }
  }
}

/// An `http://HOST[:PORT][/PATH]` URL, split.
public struct HttpUrl: Equatable {
  /// The host (a name or a dotted address).
  public var host: [UInt8]
  /// The port (80 if none was given).
  public var port: UInt16
  /// The path, `/` if none was given.
  public var path: [UInt8]

  /// `text` split, or nil if it is not an `http://` URL with a host and a valid port.
  public init?(_ text: [UInt8]) {
    let scheme = ascii("http://")
    guard text.count > scheme.count, lowercased(Array(text[0..<scheme.count])) == scheme else { return nil }
    let rest = Array(text[scheme.count...])
    let slash = rest.firstIndex(of: UInt8(ascii: "/")) ?? rest.count
    let authority = Array(rest[0..<slash])
    path = slash < rest.count ? Array(rest[slash...]) : ascii("/")
    if let colon = authority.firstIndex(of: UInt8(ascii: ":")) {
      let digits = authority[(colon + 1)...]
      guard !digits.isEmpty, digits.count <= 5, digits.allSatisfy({ $0 >= 48 && $0 <= 57 }) else {
        return nil
      }
      let value = digits.reduce(0) { $0 * 10 + Int($1 - 48) }
      guard value >= 1, value <= 65535 else { return nil }
      port = UInt16(value)
      host = Array(authority[0..<colon])
    } else {
      port = 80
      host = authority
    }
    guard !host.isEmpty, !path.contains(where: { $0 <= 32 || $0 >= 127 }) else { return nil }
  }
}

/// The offset just past the head's blank line ("\r\n\r\n"), if it has come.
func headEnd(_ bytes: UnsafeRawBufferPointer) -> Int? {
  guard bytes.count >= 4 else { return nil }
  for index in 3..<bytes.count
  where bytes[index] == 10 && bytes[index - 1] == 13 && bytes[index - 2] == 10 && bytes[index - 3] == 13 {
    return index + 1
  }
  return nil
}

func splitLines(_ bytes: UnsafeRawBufferPointer) -> [[UInt8]] {
  var lines: [[UInt8]] = []
  var current: [UInt8] = []
  var index = 0
  while index < bytes.count {
    if bytes[index] == 13 && index + 1 < bytes.count && bytes[index + 1] == 10 {
      lines.append(current)
      current = []
      index += 2
    } else {
      current.append(bytes[index])
      index += 1
    }
  }
  lines.append(current)
  return lines
}

func split(_ line: [UInt8], on separator: UInt8) -> [[UInt8]] {
  var parts: [[UInt8]] = [[]]
  for byte in line {
    if byte == separator { parts.append([]) } else { parts[parts.count - 1].append(byte) }
  }
  return parts
}

func lowercased(_ bytes: [UInt8]) -> [UInt8] { bytes.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 } }

func trimmed(_ bytes: [UInt8]) -> [UInt8] {
  var start = 0
  var end = bytes.count
  while start < end && (bytes[start] == 32 || bytes[start] == 9) { start += 1 }
  while end > start && (bytes[end - 1] == 32 || bytes[end - 1] == 9) { end -= 1 }
  return Array(bytes[start..<end])
}

/// The bytes of `literal`.
public func ascii(_ literal: StaticString) -> [UInt8] {
  Array(UnsafeBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
}
