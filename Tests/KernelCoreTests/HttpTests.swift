// HttpTests: KernelCore's HTTP pieces on literal bytes (request and response heads, URLs),
// SHA-256 against FIPS 180-4's vectors, and the ring of bytes TCP buffers data in.

import KernelCore
import Testing

private func head(_ text: String) throws(HttpFailure) -> HttpRequestHead? {
  let bytes = Array(text.utf8)
  let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
  defer { buffer.deallocate() }
  buffer.copyBytes(from: bytes)
  return try HttpRequestHead.parse(UnsafeRawBufferPointer(buffer))
}

private func responseHead(_ bytes: [UInt8]) throws(HttpFailure) -> HttpResponseHead? {
  let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
  defer { buffer.deallocate() }
  buffer.copyBytes(from: bytes)
  return try HttpResponseHead.parse(UnsafeRawBufferPointer(buffer))
}

private func failure(_ text: String) -> Int? {
  do throws(HttpFailure) {
    _ = try head(text)
    return nil
  } catch { return error.status }
}

private func sha256(_ bytes: [UInt8]) -> String {
  var hash = Sha256()
  bytes.withUnsafeBytes { hash.add($0) }
  return String(decoding: hash.finishHex(), as: UTF8.self)
}

@Suite struct HttpTests {
  @Test func aRequestHeadIsParsed() throws {
    let parsed = try #require(
      try head("PUT /files/a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbody"))
    #expect(parsed.method == Array("PUT".utf8))
    #expect(parsed.target == Array("/files/a.txt".utf8))
    #expect(parsed.contentLength == 12 && !parsed.keepAlive && parsed.minorVersion == 1)
    #expect(
      parsed.headLength
        == "PUT /files/a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\n\r\n".utf8
        .count)
    let old = try #require(try head("GET / HTTP/1.0\r\n\r\n"))
    #expect(!old.keepAlive && old.minorVersion == 0)
    #expect(try head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")?.keepAlive == true)
  }

  @Test func anIncompleteHeadWaits() throws {
    #expect(try head("GET / HTTP/1.1\r\nHost: x\r\n") == nil)
    #expect(try head("") == nil)
  }

  @Test func badHeadsAreRefusedWithTheirStatus() {
    #expect(failure("GET /\r\n\r\n") == 400)
    #expect(failure("GET / HTTP/2.0\r\n\r\n") == 505)
    #expect(failure("GET / FTP/1.0\r\n\r\n") == 400)
    #expect(failure("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n") == 501)
    #expect(failure("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") == 400)
    #expect(failure("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n") == 400)
    // A tenth digit would overflow i686's Int: refused as too large, never computed.
    #expect(failure("POST / HTTP/1.1\r\nContent-Length: 9999999999\r\n\r\n") == 413)
    #expect(failure("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n") == 413)
    #expect(
      (try? head("POST / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n"))??.contentLength == 999_999_999)
    #expect(failure("GET / HTTP/1.1\r\nno colon\r\n\r\n") == 400)
    // What a lenient proxy might read otherwise (smuggling): refused.
    #expect(failure("POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n") == 400)
    #expect(failure("POST / HTTP/1.1\r\nX: a\r\n Content-Length: 5\r\n\r\n") == 400)
    #expect(failure("POST / HTTP/1.1\r\nX: a\nContent-Length: 5\r\n\r\n") == 400)
    #expect(failure("GET / HTTP/1.1\rX\r\n\r\n") == 400)
    #expect(failure("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 9000) + "\r\n\r\n") == 431)
    #expect(failure(String(repeating: "a", count: 9000)) == 431)
  }

  @Test func aResponseHeadIsWrittenAndRead() throws {
    let written = HttpResponseHead.emit(
      status: 404, reason: "Not Found", contentType: "text/plain", contentLength: 7, keepAlive: true)
    #expect(
      String(decoding: written, as: UTF8.self)
        == "HTTP/1.1 404 Not Found\r\nServer: Tessera\r\nContent-Type: text/plain\r\nContent-Length: 7\r\nConnection: keep-alive\r\n\r\n"
    )
    let read = try #require(try responseHead(written))
    #expect(read.status == 404 && read.contentLength == 7 && read.headLength == written.count)
    let python = Array("HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6\r\nContent-Length: 3\r\n\r\nabc".utf8)
    #expect(try responseHead(python)?.status == 200)
  }

  @Test func decimalNumbersAreBoundedToNineDigits() {
    #expect(decimalNumber(Array("0".utf8)) == 0)
    #expect(decimalNumber(Array("999999999".utf8)) == 999_999_999)
    for bad in ["", "1234567890", "4294967295", "-1", "+1", "1 ", "0x10", "١"] {
      #expect(decimalNumber(Array(bad.utf8)) == nil, "\(bad)")
    }
    #expect(decimalNumber(Array("123".utf8), maximumDigits: 2) == nil)
    #expect(decimalNumber(Array("99999999999".utf8), maximumDigits: 20) == nil)
  }

  @Test func urlsAreSplit() {
    #expect(
      HttpUrl(Array("http://10.0.2.2:8000/a/b.txt".utf8))
        == HttpUrl(Array("HTTP://10.0.2.2:8000/a/b.txt".utf8)))
    let url = HttpUrl(Array("http://example.org".utf8))
    #expect(url?.host == Array("example.org".utf8) && url?.port == 80 && url?.path == Array("/".utf8))
    #expect(HttpUrl(Array("http://h:8000/x".utf8))?.port == 8000)
    for bad in [
      "ftp://h/", "http://", "http://:80/", "http://h:0/", "http://h:65536/", "http://h:8a/", "http://h/a b",
    ] {
      #expect(HttpUrl(Array(bad.utf8)) == nil, "\(bad)")
    }
  }

  @Test func sha256MatchesTheStandardsVectors() {
    #expect(sha256([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    #expect(sha256(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    #expect(
      sha256(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
        == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    #expect(
      sha256([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))
        == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    // Fed in uneven pieces: the same hash.
    var hash = Sha256()
    let bytes = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
    var start = 0
    for size in [1, 63, 64, 65, 999, 4096] + [Int](repeating: 10_000, count: 99) where start < bytes.count {
      let end = min(start + size, bytes.count)
      bytes[start..<end].withUnsafeBytes { hash.add($0) }
      start = end
    }
    bytes[start...].withUnsafeBytes { hash.add($0) }
    #expect(
      String(decoding: hash.finishHex(), as: UTF8.self)
        == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
  }

  @Test func aByteQueueWrapsAndHoldsNoMoreThanItsCapacity() {
    var queue = ByteQueue(capacity: 1024)
    #expect(queue.append(contentsOf: [UInt8](repeating: 1, count: 1000)) == 1000)
    #expect(queue.append(contentsOf: [UInt8](0..<100)) == 24)
    #expect(queue.room == 0 && queue.count == 1024)
    queue.removeFirst(1000)
    #expect(queue.peek(from: 0, count: 24) == [UInt8](0..<24))
    // Across the end of the ring.
    #expect(queue.append(contentsOf: [UInt8](100..<200)) == 100)
    #expect(queue.take(124) == [UInt8](0..<24) + [UInt8](100..<200))
    #expect(queue.isEmpty && queue.room == 1024)
    queue.removeFirst(5)
    #expect(queue.count == 0)
  }
}
