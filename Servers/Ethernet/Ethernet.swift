// Ethernet: see Ethernet.server. Frame layout is KernelCore's (Ethernet.swift).
//
// Contract: `start` opens a frame port on the device, maps its receive slots (read-only)
// and send slots, and starts the receive thread, which lends each frame for this station
// to the receiver of its EtherType and releases it when the receiver returns (a frame
// for another station, of a type nobody registered, or too short is dropped and
// counted). Send buffers are the port's 16 slots: `allocate` hands one out, `send` writes
// the Ethernet header in front of the payload the caller wrote, sends and frees it.
// Thread-safe: one ServerMutex guards the tables and counters; no call to another server
// is made while holding it.

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

/// Counts, by what happened to a frame.
struct Counts {
  var delivered = 0
  var notForUs = 0
  var noReceiver = 0
  var tooShort = 0
  var receiverFailed = 0
  var sent = 0
  var sendRefused = 0
}

final class Link: EthernetLinkImplementation, LinkStatusImplementation, RunnableImplementation {
  static let bufferSize = 2048
  static let sendBufferCount = 16
  private let port: FramePort
  private let receiveMemory: Memory
  private let sendMemory: Memory
  private let receiveSlots: UnsafeRawPointer
  private let sendSlots: UnsafeMutableRawPointer
  let mac: MacAddress
  private let mutex: ServerMutex
  /// Units: free send buffers.
  private let freeBuffers: Semaphore
  private var allocated = [Bool](repeating: false, count: Link.sendBufferCount)
  private var receivers: [(type: UInt16, receiver: EthernetReceiver)] = []
  private var counts = Counts()

  init?() {
    guard let port = (try? Required.device.openPort()) ?? nil,
      let receive = (try? port.receiveSlots()) ?? nil, let send = try? port.sendSlots(),
      let receiveAddress = try? Required.memory.map(memory: receive, writable: 0), receiveAddress != 0,
      let sendAddress = try? Required.memory.map(memory: send, writable: 1), sendAddress != 0,
      let lock = try? Required.sync.makeSemaphore(count: 0),
      let free = try? Required.sync.makeSemaphore(count: UInt(Link.sendBufferCount))
    else { return nil }
    var address = [UInt8](repeating: 0, count: 6)
    guard (address.withUnsafeMutableBytes { try? Required.device.macAddress(address: $0) }) == 6 else {
      return nil
    }
    self.port = port
    receiveMemory = receive
    sendMemory = send
    receiveSlots = UnsafeRawPointer(bitPattern: receiveAddress)!
    sendSlots = UnsafeMutableRawPointer(bitPattern: sendAddress)!
    mac = address.withUnsafeBytes { MacAddress($0) }
    mutex = ServerMutex(sleep: { try? lock.wait() }, wake: { try? lock.signal() })
    freeBuffers = free
  }

  // MARK: Receiving

  /// The receive thread: forever takes the next frame and lends it to its receiver.
  func run() {
    while true {
      guard let word = try? port.receive(), word != 0 else {
        // The device failed (or lends this port too much): do not spin.
        try? Required.clock.sleep(milliseconds: 10)
        continue
      }
      let slot = Int(word >> 16)
      let length = Int(word & 0xFFFF)
      deliver(slot: slot, length: min(length, Link.bufferSize))
      _ = try? port.release(slot: UInt(slot))
    }
  }

  private func deliver(slot: Int, length: Int) {
    let start = slot * Link.bufferSize
    let bytes = UnsafeRawBufferPointer(start: receiveSlots + start, count: length)
    guard let frame = try? EthernetFrame(bytes) else {
      mutex.withLock { counts.tooShort &+= 1 }
      return
    }
    let destination = frame.destination
    guard destination == mac || destination.isGroup else {
      mutex.withLock { counts.notForUs &+= 1 }
      return
    }
    let type = frame.type
    let receiver: EthernetReceiver? = mutex.withLock {
      guard let entry = receivers.first(where: { $0.type == type }) else {
        counts.noReceiver &+= 1
        return nil
      }
      counts.delivered &+= 1
      return entry.receiver
    }
    guard let receiver else { return }
    do throws(CallError) {
      try receiver.receive(
        offset: UInt(start + EthernetFrame.Offset.payload),
        length: UInt(length - EthernetFrame.Offset.payload),
        broadcast: destination.isGroup ? 1 : 0)
    } catch {
      mutex.withLock { counts.receiverFailed &+= 1 }
    }
  }

  // MARK: EthernetLink

  func register(type: UInt, receiver: EthernetReceiver) -> UInt {
    guard type <= 0xFFFF else { return 0 }
    let added = mutex.withLock {
      guard receivers.count < 8, !receivers.contains(where: { UInt($0.type) == type }) else { return false }
      receivers.append((UInt16(type), receiver))
      return true
    }
    // The call's reference is lent for the call only: keep one of our own.
    guard added, (try? receiver.acquire()) != nil else { return 0 }
    return 1
  }

  func receiveBuffers() -> Memory? {
    // A reference of our own for the caller (the call moves it to the caller's table).
    (try? receiveMemory.acquire()) != nil ? receiveMemory : nil
  }

  func sendBuffers() -> Memory? { (try? sendMemory.acquire()) != nil ? sendMemory : nil }

  func allocate() -> UInt {
    guard (try? freeBuffers.waitFor(milliseconds: 100)) == 1 else { return 0 }
    return mutex.withLock {
      guard let index = allocated.firstIndex(of: false) else { return 0 }
      allocated[index] = true
      return UInt(index + 1)
    }
  }

  /// Marks `buffer` free (whether it was allocated).
  private func release(_ buffer: UInt) -> Bool {
    guard buffer >= 1, buffer <= UInt(Link.sendBufferCount) else { return false }
    let wasAllocated = mutex.withLock {
      let index = Int(buffer) - 1
      defer { allocated[index] = false }
      return allocated[index]
    }
    if wasAllocated { try? freeBuffers.signal() }
    return wasAllocated
  }

  func free(buffer: UInt) -> UInt { release(buffer) ? 1 : 0 }

  func send(
    buffer: UInt, length: UInt, destinationHigh: UInt, destinationLow: UInt, type: UInt, checksums: UInt
  ) -> UInt {
    let valid =
      buffer >= 1 && buffer <= UInt(Link.sendBufferCount)
      && mutex.withLock { allocated[Int(buffer) - 1] }
    guard valid, length <= 1500, type <= 0xFFFF, destinationHigh <= 0xFFFF else {
      _ = release(buffer)
      mutex.withLock { counts.sendRefused &+= 1 }
      return 0
    }
    let slot = Int(buffer) - 1
    let frame = UnsafeMutableRawBufferPointer(
      start: sendSlots + slot * Link.bufferSize, count: Link.bufferSize)
    let destination = MacAddress(
      UInt8(truncatingIfNeeded: destinationHigh >> 8), UInt8(truncatingIfNeeded: destinationHigh),
      UInt8(truncatingIfNeeded: destinationLow >> 24), UInt8(truncatingIfNeeded: destinationLow >> 16),
      UInt8(truncatingIfNeeded: destinationLow >> 8), UInt8(truncatingIfNeeded: destinationLow))
    _ = EthernetFrame.emit(into: frame, destination: destination, source: mac, type: UInt16(type))
    let sent =
      (try? port.send(
        slot: UInt(slot), length: length + UInt(EthernetFrame.Offset.payload),
        checksums: checksums != 0 ? 1 : 0))
      == 1
    _ = release(buffer)
    mutex.withLock {
      if sent { counts.sent &+= 1 } else { counts.sendRefused &+= 1 }
    }
    return sent ? 1 : 0
  }

  func macAddress(address: UnsafeMutableRawBufferPointer) -> Int {
    guard address.count >= 6 else { return 0 }
    mac.write(to: address, at: 0)
    return 6
  }

  func mtu() -> UInt { 1500 }

  func status() -> LinkStatus { LinkStatus.export(self)! }

  func counters(text: UnsafeMutableRawBufferPointer) -> Int {
    var device = [UInt8](repeating: 0, count: 512)
    let deviceCount = device.withUnsafeMutableBytes { (try? Required.device.counters(text: $0)) ?? 0 }
    let copy = mutex.withLock { counts }
    var writer = TextWriter(text)
    device.withUnsafeBufferPointer { bytes in
      writer.line("device: \(text: UnsafeBufferPointer(rebasing: bytes[0..<min(deviceCount, 200)]))")
    }
    writer.line(
      "ethernet: delivered \(copy.delivered), not for us \(copy.notForUs), no receiver \(copy.noReceiver), too short \(copy.tooShort), receiver failed \(copy.receiverFailed)"
    )
    writer.line("ethernet: sent \(copy.sent), refused \(copy.sendRefused)")
    return writer.finish()
  }
}

func start() -> EthernetLink {
  guard let link = Link() else {
    say("ethernet: the device gave no frame port (or its buffers could not be mapped)")
    fatalError("ethernet: no frame port")
  }
  guard let work = Runnable.export(link), (try? Required.threads.spawn(work: work, priority: 2)) ?? 0 != 0
  else {
    say("ethernet: no receive thread could be started")
    fatalError("ethernet: no receive thread")
  }
  _ = work.release()
  say("ethernet: up, MAC \(link.mac)")
  return EthernetLink.export(link)!
}
