// Http: see Http.server. Request heads are parsed by KernelCore's HttpRequestHead
// (host-tested); this server keeps each connection's progress and moves bytes when the
// shared semaphore says something changed, never waiting on one connection.
//
// Contract: at most 32 connections at once; a request head of at most 8 KiB; one request
// is served at a time per connection (a pipelined next request waits in its input);
// responses are framed by Content-Length. File names are one path segment of at most 64
// bytes (the file system's root directory holds the files); a PUT that does not fit on
// the disk is answered 507 with what was kept. `/bytes/N` sends byte i as i mod 251, N
// of at most 9 digits. A connection on which nothing moved for 30 s is closed (300 s while
// the client does not take a response). Counts from other servers (a file's size, bytes
// a write took) are clamped, never converted with a trapping Int().

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

/// Where a request's body goes.
struct BodySink {
  /// Bytes of it still to come.
  var remaining: Int
  /// Hashed (POST /sha256), or written to `file` at `offset` (PUT), or dropped.
  var hash: Sha256?
  var file: File?
  var offset = 0
  var short = false
  var keepAlive: Bool
}

/// A response body produced piece by piece: the pattern, or a file's bytes.
struct BodySource {
  var remaining: Int
  var offset = 0
  var file: File?
}

/// One connection being served.
struct Session {
  let stream: TcpStream
  var input: [UInt8] = []
  var output: [UInt8] = []
  /// How much of `output` is written.
  var written = 0
  var sink: BodySink?
  var source: BodySource?
  /// Close once the output is written.
  var closing = false
  /// When a byte last moved (milliseconds since boot).
  var lastActivity: UInt
}

final class Server: NetworkApplicationImplementation, RunnableImplementation {
  static let port: UInt = 80
  /// 32 x (16 KiB in + a piece out, about 40 KiB) stays well inside the 4 MiB heap.
  static let maximumSessions = 32
  static let piece = 16384
  /// A session that moves nothing for this long is closed (milliseconds): 32 idle ones
  /// once kept every client out for as long as they liked. One whose response the client
  /// does not take gets longer: a lossy link's retransmissions back off for long.
  static let idleTimeout: UInt = 30_000
  static let stalledTimeout: UInt = 300_000

  let changed: Semaphore
  let listener: TcpListener
  var sessions: [Session] = []
  var counts: (accepted: UInt64, requests: UInt64, failures: UInt64, bytesIn: UInt64, bytesOut: UInt64) = (
    0, 0, 0, 0, 0
  )
  let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Server.piece, alignment: 16)
  /// `/bytes/N`'s pattern from every phase: byte i is i mod 251, for 251 + `piece` bytes,
  /// so a piece is one copy (computed byte by byte, the pattern cost more than TCP).
  let pattern: [UInt8] = (0..<(251 + Server.piece)).map { UInt8(truncatingIfNeeded: $0 % 251) }

  init?() {
    guard let changed = try? Required.sync.makeSemaphore(count: 0),
      let listener = (try? Required.tcp.listen(port: Server.port, backlog: 32)) ?? nil
    else { return nil }
    self.changed = changed
    self.listener = listener
    _ = try? listener.watch(semaphore: changed)
  }

  func run() {
    while true {
      _ = try? changed.waitFor(milliseconds: 1000)
      let now = (try? Required.clock.uptimeMilliseconds()) ?? 0
      while sessions.count < Server.maximumSessions,
        let stream = (try? listener.accept(milliseconds: 0)) ?? nil
      {
        _ = try? stream.watch(semaphore: changed)
        sessions.append(Session(stream: stream, lastActivity: now))
        counts.accepted &+= 1
      }
      var index = sessions.count - 1
      while index >= 0 {
        if !serve(&sessions[index], now: now) {
          finish(sessions[index])
          sessions.remove(at: index)
        }
        index -= 1
      }
    }
  }

  private func finish(_ session: Session) {
    _ = session.sink?.file?.release()
    _ = session.source?.file?.release()
    _ = session.stream.release()
  }

  /// Moves what can move on `session`; false once it is done with (or idle too long).
  private func serve(_ session: inout Session, now: UInt) -> Bool {
    var progress = true
    var moved = false
    var rounds = 0
    while progress {
      // A round after the first means something moved in the one before.
      if rounds > 0 { moved = true }
      rounds += 1
      progress = false
      // Out: what is produced, then more of a body being sent.
      if flush(&session) { progress = true }
      if session.output.isEmpty, session.source != nil {
        produce(&session)
        progress = true
        continue
      }
      if !session.output.isEmpty || session.source != nil { break }
      if session.closing { return false }
      // In: take what came, then act on it.
      if session.input.count < Server.piece {
        // At most a piece in all: a client that sends and never reads holds no more.
        let room = Server.piece - session.input.count
        let count =
          (try? session.stream.read(
            data: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<room]), milliseconds: 0))
          ?? 0
        if count > 0 {
          session.input += UnsafeRawBufferPointer(rebasing: buffer[0..<count])
          counts.bytesIn &+= UInt64(count)
          progress = true
        }
      }
      if consume(&session) { progress = true }
    }
    if moved {
      session.lastActivity = now
    } else {
      let waiting = session.output.isEmpty && session.source == nil
      if now &- session.lastActivity >= (waiting ? Server.idleTimeout : Server.stalledTimeout) {
        return false
      }
    }
    let status = (try? session.stream.status()) ?? 8
    if status & 8 != 0 { return false }
    // The peer is done sending and nothing of a request is left: close.
    if status & 4 != 0 && status & 2 == 0 && session.output.isEmpty && session.source == nil
      && (session.input.isEmpty || session.sink != nil)
    {
      return false
    }
    return true
  }

  private func flush(_ session: inout Session) -> Bool {
    var moved = false
    while !session.output.isEmpty {
      let count = min(session.output.count - session.written, Server.piece)
      let start = session.written
      let taken = session.output.withUnsafeBytes {
        (try? session.stream.write(
          data: UnsafeRawBufferPointer(rebasing: $0[start..<(start + count)]), milliseconds: 0))
          ?? 0
      }
      let sent = min(Int(truncatingIfNeeded: taken), count)
      guard sent > 0 else { break }
      // Written from an offset (removeFirst moved what was left for every write).
      session.written += sent
      if session.written == session.output.count {
        session.output = []
        session.written = 0
      }
      counts.bytesOut &+= UInt64(sent)
      moved = true
    }
    return moved
  }

  /// The next piece of the body being sent.
  private func produce(_ session: inout Session) {
    guard var source = session.source else { return }
    let count = min(source.remaining, Server.piece)
    if let file = source.file {
      var done = 0
      while done < count {
        let piece = min(count - done, 4096)
        let read =
          (try? file.read(
            offset: UInt(source.offset + done),
            data: UnsafeMutableRawBufferPointer(rebasing: buffer[done..<(done + piece)]))) ?? 0
        guard read > 0 else { break }
        done += read
      }
      if done < count {
        // The file shrank or failed under us: the length promised cannot be kept.
        session.closing = true
        session.source = nil
        _ = file.release()
        return
      }
    } else {
      pattern.withUnsafeBytes { bytes in
        buffer.baseAddress!.copyMemory(from: bytes.baseAddress! + source.offset % 251, byteCount: count)
      }
    }
    // Produced only once the output is empty: the piece becomes the output in one copy (an
    // element-wise += of 16 KiB showed as a quarter of the instructions per byte sent).
    session.output = [UInt8](unsafeUninitializedCapacity: count) { bytes, initialized in
      UnsafeMutableRawBufferPointer(bytes).copyMemory(
        from: UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
      initialized = count
    }
    session.written = 0
    source.offset += count
    source.remaining -= count
    if source.remaining == 0 {
      _ = source.file?.release()
      session.source = nil
    } else {
      session.source = source
    }
  }

  /// Acts on the input: feeds a body, or parses a request and starts its response.
  private func consume(_ session: inout Session) -> Bool {
    if var sink = session.sink {
      guard !session.input.isEmpty || sink.remaining == 0 else { return false }
      let count = min(sink.remaining, session.input.count)
      if count > 0 {
        session.input.withUnsafeBytes { bytes in
          let part = UnsafeRawBufferPointer(rebasing: bytes[0..<count])
          sink.hash?.add(part)
          if let file = sink.file, !sink.short {
            var done = 0
            while done < count {
              let piece = min(count - done, 4096)
              let taken =
                (try? file.write(
                  offset: UInt(sink.offset + done),
                  data: UnsafeRawBufferPointer(rebasing: part[done..<(done + piece)])))
                ?? 0
              let written = min(Int(truncatingIfNeeded: taken), piece)
              done += max(written, 0)
              if written < piece {
                sink.short = true
                break
              }
            }
            sink.offset += done
          }
        }
        session.input.removeFirst(count)
        sink.remaining -= count
      }
      if sink.remaining > 0 {
        session.sink = sink
        return count > 0
      }
      session.sink = nil
      if var hash = sink.hash {
        var body = hash.finishHex()
        body.append(10)
        respond(
          &session, status: 200, reason: "OK", type: "text/plain", body: body, keepAlive: sink.keepAlive)
      } else if let file = sink.file {
        _ = file.release()
        if sink.short {
          respond(
            &session, status: 507, reason: "Insufficient Storage", type: "text/plain",
            body: ascii("The disk is full: the file keeps what fit.\n"), keepAlive: sink.keepAlive)
        } else {
          respond(
            &session, status: 201, reason: "Created", type: "text/plain", body: ascii("Stored.\n"),
            keepAlive: sink.keepAlive)
        }
      }
      return true
    }
    var failure: HttpFailure?
    let head: HttpRequestHead? = session.input.withUnsafeBytes { bytes in
      do throws(HttpFailure) { return try HttpRequestHead.parse(bytes) } catch {
        failure = error
        return nil
      }
    }
    if let failure {
      counts.failures &+= 1
      respond(
        &session, status: failure.status, reason: failure.reason, type: "text/plain", body: [],
        keepAlive: false)
      session.input.removeAll()
      return true
    }
    guard let head else { return false }
    session.input.removeFirst(head.headLength)
    counts.requests &+= 1
    handle(head, &session)
    return true
  }

  private func respond(
    _ session: inout Session, status: Int, reason: StaticString, type: StaticString, body: [UInt8],
    keepAlive: Bool
  ) {
    session.output += HttpResponseHead.emit(
      status: status, reason: reason, contentType: type, contentLength: body.count, keepAlive: keepAlive)
    session.output += body
    if !keepAlive { session.closing = true }
  }

  private func handle(_ head: HttpRequestHead, _ session: inout Session) {
    let keepAlive = head.keepAlive
    let get = head.method == ascii("GET")
    let target = head.target
    let filesPrefix = ascii("/files/")
    let bytesPrefix = ascii("/bytes/")
    if head.method == ascii("POST") && target == ascii("/sha256") {
      session.sink = BodySink(remaining: head.contentLength, hash: Sha256(), file: nil, keepAlive: keepAlive)
      return
    }
    if head.method == ascii("PUT") && target.starts(with: filesPrefix) {
      let name = Array(target[filesPrefix.count...])
      guard validName(name), let file = openFile(name, create: true) else {
        refuse(&session, head, status: 400, reason: "Bad Request", text: "No such file name can be stored.\n")
        return
      }
      session.sink = BodySink(remaining: head.contentLength, hash: nil, file: file, keepAlive: keepAlive)
      return
    }
    guard get else {
      refuse(
        &session, head, status: 405, reason: "Method Not Allowed",
        text: "GET, PUT /files/NAME, POST /sha256.\n")
      return
    }
    if head.contentLength > 0 {
      // A GET with a body: nothing here reads one, and left unread it would be taken for
      // the next request.
      refuse(&session, head, status: 400, reason: "Bad Request", text: "A GET takes no body.\n")
      return
    }
    if target == ascii("/") {
      respond(
        &session, status: 200, reason: "OK", type: "text/plain", body: statusPage(), keepAlive: keepAlive)
    } else if target == ascii("/files/") || target == ascii("/files") {
      respond(&session, status: 200, reason: "OK", type: "text/plain", body: listing(), keepAlive: keepAlive)
    } else if target.starts(with: filesPrefix) {
      let name = Array(target[filesPrefix.count...])
      guard validName(name), let file = openFile(name, create: false) else {
        refuse(&session, head, status: 404, reason: "Not Found", text: "No such file.\n")
        return
      }
      let size = fileSize(file)
      session.output += HttpResponseHead.emit(
        status: 200, reason: "OK", contentType: "application/octet-stream", contentLength: size,
        keepAlive: keepAlive)
      if size > 0 { session.source = BodySource(remaining: size, file: file) } else { _ = file.release() }
      if !keepAlive { session.closing = true }
    } else if target.starts(with: bytesPrefix), let count = decimalNumber(target[bytesPrefix.count...]) {
      session.output += HttpResponseHead.emit(
        status: 200, reason: "OK", contentType: "application/octet-stream", contentLength: count,
        keepAlive: keepAlive)
      if count > 0 { session.source = BodySource(remaining: count) }
      if !keepAlive { session.closing = true }
    } else {
      refuse(
        &session, head, status: 404, reason: "Not Found", text: "Nothing here: try /, /files/ or /bytes/N.\n")
    }
  }

  /// Answers with an error; a body the request announced is read and dropped first.
  private func refuse(
    _ session: inout Session, _ head: HttpRequestHead, status: Int, reason: StaticString, text: StaticString
  ) {
    counts.failures &+= 1
    if head.contentLength > 0 {
      // Not worth reading a large body we refuse: answer and close.
      respond(
        &session, status: status, reason: reason, type: "text/plain", body: ascii(text), keepAlive: false)
      return
    }
    respond(
      &session, status: status, reason: reason, type: "text/plain", body: ascii(text),
      keepAlive: head.keepAlive)
  }

  private func validName(_ name: [UInt8]) -> Bool {
    !name.isEmpty && name.count <= 64
      && name.allSatisfy { $0 > 32 && $0 < 127 && $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "%") }
      && name != ascii(".") && name != ascii("..")
  }

  /// A file's size as the file system says, within 0 to Int.max (it is another server).
  private func fileSize(_ file: File) -> Int {
    let size = (try? file.size()) ?? 0
    return size > UInt(Int.max) ? Int.max : Int(size)
  }

  private func openFile(_ name: [UInt8], create: Bool) -> File? {
    guard let root = try? Required.files.getRootDirectory() else { return nil }
    defer { _ = root.release() }
    let found = name.withUnsafeBytes { (try? root.getFile(name: $0)) ?? nil }
    if let found { return found }
    guard create else { return nil }
    return name.withUnsafeBytes { (try? root.createFile(name: $0)) ?? nil }
  }

  // MARK: Pages

  private func statusPage() -> [UInt8] {
    var page = ascii("Tessera: status\n\n== servers\n")
    let text = UnsafeMutableRawBufferPointer.allocate(byteCount: 8192, alignment: 16)
    defer { text.deallocate() }
    func add(_ title: StaticString, _ fill: (UnsafeMutableRawBufferPointer) -> Int) {
      page += ascii(title)
      let count = fill(text)
      page += UnsafeRawBufferPointer(rebasing: text[0..<min(max(count, 0), text.count)])
    }
    func part(_ size: Int) -> UnsafeMutableRawBufferPointer {
      UnsafeMutableRawBufferPointer(rebasing: text[0..<size])
    }
    add("") { _ in (try? Required.system.servers(text: part(4096))) ?? 0 }
    add("\n== threads\n") { _ in (try? Required.system.threads(text: part(4096))) ?? 0 }
    add("\n== memory\n") { _ in (try? Required.system.memory(text: part(4096))) ?? 0 }
    add("\n== network\n") { _ in (try? Required.ip.counters(text: part(2048))) ?? 0 }
    add("") { _ in (try? Required.tcp.counters(text: part(2048))) ?? 0 }
    add("\n== connections\n") { (try? Required.tcp.connections(text: $0)) ?? 0 }
    add("\n== http\n") { self.counters(text: $0) }
    return page
  }

  private func listing() -> [UInt8] {
    var page = ascii("Files (GET /files/NAME to read, PUT /files/NAME to write):\n")
    guard let root = try? Required.files.getRootDirectory() else { return page }
    defer { _ = root.release() }
    guard let names = try? root.listFiles() else { return page }
    defer { _ = names.release() }
    let name = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 16)
    defer { name.deallocate() }
    while true {
      let count = (try? names.next(name: name)) ?? 0
      guard count > 0 else { break }
      let nameBytes = Array(UnsafeRawBufferPointer(rebasing: name[0..<count]))
      var size = 0
      if let file = openFile(nameBytes, create: false) {
        size = fileSize(file)
        _ = file.release()
      }
      var line = KernelMessage()
      line.append("  /files/")
      nameBytes.withUnsafeBufferPointer { line.append(text: $0) }
      line.append("  ")
      line.append(decimal: size)
      line.append(" bytes\n")
      page += line.withBytes { Array($0) }
    }
    return page
  }

  func counters(text: UnsafeMutableRawBufferPointer) -> Int {
    var writer = TextWriter(text)
    writer.line(
      "http: port \(Server.port); \(sessions.count) connections, \(counts.accepted) accepted; \(counts.requests) requests, \(counts.failures) refused; \(counts.bytesIn) bytes in, \(counts.bytesOut) out"
    )
    return writer.finish()
  }
}

func start() -> NetworkApplication {
  guard let server = Server() else {
    say("http: port 80 could not be listened on")
    fatalError("http: no listener")
  }
  guard let work = Runnable.export(server), (try? Required.threads.spawn(work: work, priority: 2)) ?? 0 != 0
  else {
    say("http: no thread could be started")
    fatalError("http: no thread")
  }
  _ = work.release()
  say("http: serving on port 80")
  return NetworkApplication.export(server)!
}
