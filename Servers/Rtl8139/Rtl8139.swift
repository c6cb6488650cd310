// Rtl8139: see Rtl8139.server. Register layout and ring bookkeeping are KernelCore's
// (Rtl8139.swift, host-tested); this server moves the bytes.
//
// Contract: `start` resets the card, reads its MAC address, gives it a receive buffer
// (8 KiB ring with WRAP and its slack) and four 2 KiB transmit buffers in DMA memory,
// enables bus mastering, receive (own address, broadcast) and transmit, and attaches
// its interrupt. The interrupt handler acknowledges the card first, then moves received
// frames into a queue of 64 (a full queue drops the frame and counts it) and frees sent
// descriptors. `receive` waits on a semaphore counting queued frames; `send` waits for a
// free descriptor. Not thread-safe: the kernel serializes calls and the handler. The main
// object (`Device`) is not the handler: when the composition lets it go, its end
// detaches the interrupt, which lets the server unload (the line held the handler).

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

final class Card: InterruptHandlerImplementation {
  private let ports: IOPorts
  private var mac: [UInt8] = []
  private let receiveBuffer: UnsafeMutableRawPointer
  private let transmitBuffers: UnsafeMutableRawPointer
  private let transmitPhysical: UInt32
  private var receiveRing = Rtl8139ReceiveRing()
  private var transmitRing = Rtl8139TransmitRing()
  /// Received frames waiting for `receive` (copies: the ring is the card's).
  private var queue: [[UInt8]] = []
  private static let queueCapacity = 64
  private let queued: Semaphore
  private var counts = (framesIn: 0, bytesIn: 0, framesOut: 0, bytesOut: 0, errors: 0, drops: 0, overflows: 0)
  /// Frames received so far (for the fault command's pointer, which must not be a constant).
  var counterOfFramesIn: Int { counts.framesIn }

  init?(device: PciDevice) {
    guard let ports = (try? device.ports(bar: 0)) ?? nil,
      let receiveMemory =
        (try? Required.memory.allocate(
          bytes: UInt(Rtl8139ReceiveRing.size + Rtl8139ReceiveRing.wrapSlack))) ?? nil,
      let transmitMemory = (try? Required.memory.allocate(bytes: 4 * 2048)) ?? nil,
      let receiveAddress = try? Required.memory.map(memory: receiveMemory, writable: 1), receiveAddress != 0,
      let transmitAddress = try? Required.memory.map(memory: transmitMemory, writable: 1),
      transmitAddress != 0,
      let semaphore = try? Required.sync.makeSemaphore(count: 0)
    else { return nil }
    self.ports = ports
    queued = semaphore
    receiveBuffer = UnsafeMutableRawPointer(bitPattern: receiveAddress)!
    transmitBuffers = UnsafeMutableRawPointer(bitPattern: transmitAddress)!
    transmitPhysical = UInt32(truncatingIfNeeded: (try? transmitMemory.physicalAddress()) ?? 0)
    let receivePhysical = UInt32(truncatingIfNeeded: (try? receiveMemory.physicalAddress()) ?? 0)
    _ = try? device.enableBusMastering()

    // Reset, and wait (up to 100 ms) for the card to finish it.
    write8(Rtl8139Register.command, Rtl8139Command.reset)
    for _ in 0..<100 where read8(Rtl8139Register.command) & Rtl8139Command.reset != 0 {
      try? Required.clock.sleep(milliseconds: 1)
    }
    mac = (0..<6).map { read8(Rtl8139Register.macAddress + $0) }
    write32(Rtl8139Register.receiveBuffer, receivePhysical)
    for descriptor in 0..<4 {
      write32(
        Rtl8139Register.transmitAddress + UInt32(descriptor) * 4, transmitPhysical + UInt32(descriptor) * 2048
      )
    }
    write8(Rtl8139Register.command, Rtl8139Command.receiverEnable | Rtl8139Command.transmitterEnable)
    setReceiveFilter(promiscuous: false, allMulticast: false)
    write32(Rtl8139Register.transmitConfiguration, 0x0000_0700)  // largest DMA burst
    write16(Rtl8139Register.interruptMask, Rtl8139Interrupt.handled)
  }

  /// Sets the receive configuration: own address and broadcasts always; every frame
  /// (promiscuous) and every multicast frame (the multicast filter all ones) on request.
  func setReceiveFilter(promiscuous: Bool, allMulticast: Bool) {
    for index: UInt32 in 0..<8 { write8(Rtl8139Register.multicast + index, allMulticast ? 0xFF : 0) }
    var configuration =
      Rtl8139ReceiveConfiguration.acceptPhysicalMatch | Rtl8139ReceiveConfiguration.acceptBroadcast
      | Rtl8139ReceiveConfiguration.wrap | Rtl8139ReceiveConfiguration.fifoAndBurst
    if promiscuous { configuration |= Rtl8139ReceiveConfiguration.acceptAll }
    if allMulticast { configuration |= Rtl8139ReceiveConfiguration.acceptMulticast }
    write32(Rtl8139Register.receiveConfiguration, configuration)
    // QEMU's card starts its ring again at 0 when the configuration is written: so does
    // the driver (frames still in the ring are lost). CAPR is written, not left at its
    // reset value: the card takes frames it held back (its ring was full before the
    // reset, say under a failed driver) only when CAPR is written, and without a first
    // frame this driver would never write it.
    receiveRing.reset()
    write16(Rtl8139Register.readAddress, 0xFFF0)
  }

  // MARK: registers (the card ignores writes of the wrong width)

  private func read8(_ register: UInt32) -> UInt8 {
    UInt8(truncatingIfNeeded: (try? ports.read8(offset: UInt(register))) ?? 0xFF)
  }
  private func write8(_ register: UInt32, _ value: UInt8) {
    _ = try? ports.write8(offset: UInt(register), value: UInt(value))
  }
  private func read16(_ register: UInt32) -> UInt16 {
    UInt16(truncatingIfNeeded: (try? ports.read16(offset: UInt(register))) ?? 0xFFFF)
  }
  private func write16(_ register: UInt32, _ value: UInt16) {
    _ = try? ports.write16(offset: UInt(register), value: UInt(value))
  }
  private func read32(_ register: UInt32) -> UInt32 {
    UInt32(truncatingIfNeeded: (try? ports.read32(offset: UInt(register))) ?? 0xFFFF_FFFF)
  }
  private func write32(_ register: UInt32, _ value: UInt32) {
    _ = try? ports.write32(offset: UInt(register), value: UInt(value))
  }

  // MARK: interrupts

  func interrupt() {
    let status = read16(Rtl8139Register.interruptStatus)
    write16(Rtl8139Register.interruptStatus, status)  // acknowledged on the card before the EOI
    if status
      & (Rtl8139Interrupt.receiveOK | Rtl8139Interrupt.receiveError | Rtl8139Interrupt.receiveOverflow) != 0
    {
      drainReceiveRing()
    }
    if status & (Rtl8139Interrupt.receiveOverflow | Rtl8139Interrupt.fifoOverflow) != 0 {
      counts.overflows += 1
    }
    completeTransmissions()
  }

  private func drainReceiveRing() {
    let ring = receiveBuffer.assumingMemoryBound(to: UInt8.self)
    while read8(Rtl8139Register.command) & Rtl8139Command.bufferEmpty == 0 {
      let packet = receiveRing.next { offset in UInt16(ring[offset]) | UInt16(ring[offset + 1]) << 8 }
      switch packet {
      case .bad:
        // Not a packet the card could have written: start the receiver again from 0.
        counts.errors += 1
        write8(Rtl8139Register.command, Rtl8139Command.transmitterEnable)
        write8(Rtl8139Register.command, Rtl8139Command.receiverEnable | Rtl8139Command.transmitterEnable)
        receiveRing.reset()
        write16(Rtl8139Register.readAddress, 0xFFF0)
        return
      case .frame(let offset, let length):
        if queue.count < Self.queueCapacity {
          queue.append(Array(UnsafeBufferPointer(start: ring + offset, count: length)))
          counts.framesIn += 1
          counts.bytesIn += length
          _ = try? queued.signal()
        } else {
          counts.drops += 1
        }
        write16(Rtl8139Register.readAddress, receiveRing.advance(pastLength: length + 4))
      }
    }
  }

  private func completeTransmissions() {
    while let oldest = transmitRing.oldest {
      let status = read32(Rtl8139Register.transmitStatus + UInt32(oldest) * 4)
      let (done, failed) = transmitRing.complete(status: status)
      guard done else { break }
      if failed { counts.errors += 1 }
    }
  }

  // MARK: what Device offers

  func send(frame: UnsafeRawBufferPointer) -> UInt {
    guard frame.count >= 14 else { return 0 }
    // Wait (up to 100 ms) for a free descriptor.
    for _ in 0..<100 where !transmitRing.hasRoom {
      completeTransmissions()
      if !transmitRing.hasRoom { try? Required.clock.sleep(milliseconds: 1) }
    }
    guard let (descriptor, status) = transmitRing.take(length: frame.count) else {
      counts.drops += 1
      return 0
    }
    let buffer = transmitBuffers + descriptor * 2048
    buffer.copyMemory(from: frame.baseAddress!, byteCount: frame.count)
    if frame.count < Rtl8139TransmitRing.minimumFrame {
      (buffer + frame.count).initializeMemory(
        as: UInt8.self, repeating: 0, count: Rtl8139TransmitRing.minimumFrame - frame.count)
    }
    write32(Rtl8139Register.transmitStatus + UInt32(descriptor) * 4, status)
    counts.framesOut += 1
    counts.bytesOut += frame.count
    return 1
  }

  func receive(frame: UnsafeMutableRawBufferPointer) -> Int {
    try? queued.wait()  // holds no lock while it waits
    guard !queue.isEmpty else { return 0 }
    let next = queue.removeFirst()
    let count = min(next.count, frame.count)
    next.withUnsafeBytes { frame.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: count) }
    return count
  }

  func macAddress(address: UnsafeMutableRawBufferPointer) -> Int {
    for index in 0..<min(6, address.count) { address[index] = mac[index] }
    return min(6, address.count)
  }

  func counters(text: UnsafeMutableRawBufferPointer) -> Int {
    let line: KernelMessage =
      "frames in \(counts.framesIn) (\(counts.bytesIn) bytes), out \(counts.framesOut) (\(counts.bytesOut) bytes), errors \(counts.errors), drops \(counts.drops), overflows \(counts.overflows)"
    return line.withBytes { bytes in
      let count = min(bytes.count, text.count)
      for index in 0..<count { text[index] = bytes[index] }
      return count
    }
  }
}

/// The driver's main object: the NetworkDevice the layers above hold.
final class Device: NetworkDeviceImplementation {
  let card: Card
  let line: InterruptLine

  init(card: Card, line: InterruptLine) {
    self.card = card
    self.line = line
  }

  deinit { _ = try? line.detach() }

  func send(frame: UnsafeRawBufferPointer) -> UInt { card.send(frame: frame) }
  func receive(frame: UnsafeMutableRawBufferPointer) -> Int { card.receive(frame: frame) }
  func macAddress(address: UnsafeMutableRawBufferPointer) -> Int { card.macAddress(address: address) }
  func counters(text: UnsafeMutableRawBufferPointer) -> Int { card.counters(text: text) }

  func setReceiveFilter(promiscuous: UInt, allMulticast: UInt) -> UInt {
    card.setReceiveFilter(promiscuous: promiscuous != 0, allMulticast: allMulticast != 0)
    return 1
  }

  func fault() {
    let wild = UnsafeMutablePointer<UInt>(bitPattern: UInt(0xDEAD_0000) | UInt(card.counterOfFramesIn & 4))!
    wild.pointee = 1  // page fault: nothing is mapped there
  }
}

func start() -> NetworkDevice {
  guard let device = (try? Required.pci.find(vendor: 0x10EC, device: 0x8139)) ?? nil else {
    fatalError("rtl8139: the PCI bus server has no RTL8139 for this driver")
  }
  guard let card = Card(device: device), let line = (try? device.interrupt()) ?? nil,
    let handler = InterruptHandler.export(card), (try? line.attach(handler: handler)) == 1
  else {
    fatalError("rtl8139: the card's ports, memory or interrupt could not be had")
  }
  var mac: KernelMessage = "rtl8139: ready, MAC "
  var address = [UInt8](repeating: 0, count: 6)
  _ = address.withUnsafeMutableBytes { card.macAddress(address: $0) }
  for (index, byte) in address.enumerated() {
    if index > 0 { mac.append(":") }
    mac.append(hex: byte, width: 2, prefix: false)
  }
  say(mac)
  return NetworkDevice.export(Device(card: card, line: line))!
}
