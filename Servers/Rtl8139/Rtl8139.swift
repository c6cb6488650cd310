// Rtl8139: see Rtl8139.server. Register layout and ring bookkeeping are KernelCore's
// (Rtl8139.swift, host-tested); this server moves the bytes.
//
// Contract: `start` checks that the bound device is an RTL8139 and may do DMA (else it
// fails with a message saying which), resets the card, reads its MAC address, sets up
// the mode the composition chose in DMA memory (C: an 8 KiB receive ring with WRAP and
// its slack, four 2 KiB transmit buffers; C+: 64 receive and 16 transmit descriptors,
// each with its own buffer), enables receive (own address, broadcast) and transmit, and
// attaches its interrupt. The interrupt handler acknowledges the card first, then moves
// received frames into 64 slots (with every slot full or lent, a frame is dropped and
// counted), which `receive` copies out of and a FramePort lends to its holder; the
// card raises no interrupt for sent frames: `send` frees sent descriptors when it needs
// one. `receive` waits on a semaphore counting queued frames; `send`
// waits (up to 100 ms) for a free descriptor. Not thread-safe: the kernel serializes calls
// and the handler. The main object (`Device`) is not the handler: when the composition
// lets it go, its end detaches the interrupt and gives up bus mastering.

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

/// DMA memory: mapped into this server, and where the card sees it.
struct DmaBuffer {
  let address: UnsafeMutableRawPointer
  let physical: UInt32

  /// `bytes` of new, zeroed, physically contiguous memory, which the bus server keeps
  /// until the card cannot master the bus any more; nil if there is none.
  init?(bytes: Int, keptBy mastering: BusMastering) {
    guard let memory = (try? Required.memory.allocate(bytes: UInt(bytes))) ?? nil,
      (try? mastering.keep(memory: memory)) == 1,
      let mapped = try? Required.memory.map(memory: memory, writable: 1), mapped != 0,
      let physical = try? memory.physicalAddress()
    else { return nil }
    address = UnsafeMutableRawPointer(bitPattern: mapped)!
    self.physical = UInt32(truncatingIfNeeded: physical)
  }

  func word(at offset: Int) -> UInt32 { (address + offset).loadUnaligned(as: UInt32.self) }
  func setWord(_ value: UInt32, at offset: Int) { (address + offset).storeBytes(of: value, as: UInt32.self) }
}

final class Card: InterruptHandlerImplementation {
  private let ports: IOPorts
  /// C+ mode (descriptor rings) rather than C mode.
  let plus: Bool
  private(set) var mac: [UInt8] = []
  // C mode: the receive ring and four transmit buffers.
  private var receiveBuffer: DmaBuffer?
  private var receiveRing = Rtl8139ReceiveRing()
  private var transmitRing = Rtl8139TransmitRing()
  // C+ mode: descriptor rings; buffers follow the descriptors in the same memory.
  private var receiveDescriptors = Rtl8139ReceiveDescriptors()
  private var transmitDescriptors = Rtl8139TransmitDescriptors()
  private var receiveRingMemory: DmaBuffer?
  private let transmitMemory: DmaBuffer
  /// Received frames: copies (the card's buffers are its own again at once) in fixed
  /// slots of 2 KiB in memory ports map read-only, so receiving allocates nothing. A slot
  /// is free, queued (in `queued`, oldest first) or lent to a port (`lentTo`, its number).
  private let receiveMemory: Memory
  private let receiveSlots: UnsafeMutableRawPointer
  private var slotLengths = [Int](repeating: 0, count: Card.queueCapacity)
  private var lentTo = [Int](repeating: 0, count: Card.queueCapacity)
  private var freeSlots = [Int](0..<Card.queueCapacity)
  private var queued = [Int](repeating: 0, count: Card.queueCapacity)
  private var firstQueued = 0
  private var queuedCount = 0
  static let slotSize = 2048
  private static let queueCapacity = 64
  private let waiting: Semaphore
  private var counts = (
    framesIn: 0, bytesIn: 0, framesOut: 0, bytesOut: 0, errors: 0, drops: 0, overflows: 0, missed: 0
  )

  private static let receiveDescriptorBytes = Rtl8139ReceiveDescriptors.count * Rtl8139Descriptor.size
  private static let transmitDescriptorBytes = Rtl8139TransmitDescriptors.count * Rtl8139Descriptor.size

  init?(ports: IOPorts, plus: Bool, loopback: Bool, mastering: BusMastering) {
    self.ports = ports
    self.plus = plus
    guard let semaphore = try? Required.sync.makeSemaphore(count: 0),
      let receiveMemory = (try? Required.memory.allocate(bytes: UInt(Self.queueCapacity * Self.slotSize)))
        ?? nil,
      let receiveAddress = try? Required.memory.map(memory: receiveMemory, writable: 1), receiveAddress != 0
    else { return nil }
    waiting = semaphore
    self.receiveMemory = receiveMemory
    receiveSlots = UnsafeMutableRawPointer(bitPattern: receiveAddress)!
    if plus {
      // Descriptors first (the card wants them 256-byte aligned: a page is), then buffers.
      guard
        let receive = DmaBuffer(
          bytes: Self.receiveDescriptorBytes + Rtl8139ReceiveDescriptors.count
            * Rtl8139ReceiveDescriptors.bufferSize, keptBy: mastering),
        let transmit = DmaBuffer(
          bytes: Self.transmitDescriptorBytes + Rtl8139TransmitDescriptors.count
            * Rtl8139TransmitDescriptors.bufferSize, keptBy: mastering)
      else { return nil }
      receiveRingMemory = receive
      transmitMemory = transmit
    } else {
      guard
        let receive = DmaBuffer(
          bytes: Rtl8139ReceiveRing.size + Rtl8139ReceiveRing.wrapSlack, keptBy: mastering),
        let transmit = DmaBuffer(bytes: Rtl8139TransmitRing.descriptors * 2048, keptBy: mastering)
      else { return nil }
      receiveBuffer = receive
      transmitMemory = transmit
    }

    // Reset, and wait (up to 100 ms) for the card to finish it.
    write8(Rtl8139Register.command, Rtl8139Command.reset)
    for _ in 0..<100 where read8(Rtl8139Register.command) & Rtl8139Command.reset != 0 {
      try? Required.clock.sleep(milliseconds: 1)
    }
    mac = (0..<6).map { read8(Rtl8139Register.macAddress + $0) }
    if plus {
      startCPlus()
    } else {
      write32(Rtl8139Register.receiveBuffer, receiveBuffer!.physical)
      for descriptor in 0..<4 {
        write32(
          Rtl8139Register.transmitAddress + UInt32(descriptor) * 4,
          transmitMemory.physical + UInt32(descriptor) * 2048)
      }
      write8(Rtl8139Register.command, Rtl8139Command.receiverEnable | Rtl8139Command.transmitterEnable)
    }
    setReceiveFilter(promiscuous: false, allMulticast: false)
    // The largest DMA burst; in loopback (a benchmark's setting) frames sent come back to
    // the card's own receiver instead of leaving.
    write32(
      Rtl8139Register.transmitConfiguration,
      Rtl8139TransmitConfiguration.largestBurst | (loopback ? Rtl8139TransmitConfiguration.loopback : 0))
    write32(Rtl8139Register.missedPackets, 0)
    write16(
      Rtl8139Register.interruptMask, plus ? Rtl8139Interrupt.handled : Rtl8139Interrupt.handledWithFlowControl
    )
  }

  /// C+ mode: every receive descriptor given to the card with its buffer, the transmit
  /// descriptors empty, both rings' addresses written, then C+ and the classic enables.
  private func startCPlus() {
    let ring = receiveRingMemory!
    for index in 0..<Rtl8139ReceiveDescriptors.count {
      let descriptor = index * Rtl8139Descriptor.size
      ring.setWord(0, at: descriptor + 4)
      ring.setWord(
        ring.physical + UInt32(Self.receiveDescriptorBytes + index * Rtl8139ReceiveDescriptors.bufferSize),
        at: descriptor + 8)
      ring.setWord(0, at: descriptor + 12)
      ring.setWord(Rtl8139ReceiveDescriptors.ready(index), at: descriptor)
    }
    for index in 0..<Rtl8139TransmitDescriptors.count {
      let descriptor = index * Rtl8139Descriptor.size
      transmitMemory.setWord(0, at: descriptor)
      transmitMemory.setWord(0, at: descriptor + 4)
      transmitMemory.setWord(
        transmitMemory.physical
          + UInt32(Self.transmitDescriptorBytes + index * Rtl8139TransmitDescriptors.bufferSize),
        at: descriptor + 8)
      transmitMemory.setWord(0, at: descriptor + 12)
    }
    write16(
      Rtl8139Register.cPlusCommand, Rtl8139CPlusCommand.receiverEnable | Rtl8139CPlusCommand.transmitterEnable
    )
    write32(Rtl8139Register.receiveRingLow, ring.physical)
    write32(Rtl8139Register.receiveRingHigh, 0)
    write32(Rtl8139Register.transmitRingLow, transmitMemory.physical)
    write32(Rtl8139Register.transmitRingHigh, 0)
    // Enabling the receiver and transmitter starts both rings at descriptor 0.
    write8(Rtl8139Register.command, Rtl8139Command.receiverEnable | Rtl8139Command.transmitterEnable)
    receiveDescriptors.reset()
  }

  /// Sets the receive configuration: own address and broadcasts always; every frame
  /// (promiscuous) and every multicast frame (the multicast filter all ones) on request.
  func setReceiveFilter(promiscuous: Bool, allMulticast: Bool) {
    let filter: InlineArray<8, UInt8> = .init(repeating: allMulticast ? 0xFF : 0)
    configureReceiver(promiscuous: promiscuous, multicast: allMulticast, filter: filter)
  }

  /// Takes multicast frames to `addresses` (6 bytes each) by the card's hash filter.
  func setMulticastList(addresses: UnsafeRawBufferPointer) -> UInt {
    guard addresses.count % 6 == 0 else { return 0 }
    configureReceiver(
      promiscuous: promiscuous, multicast: !addresses.isEmpty,
      filter: Rtl8139MulticastFilter.bytes(for: addresses))
    return 1
  }

  private var promiscuous = false

  private func configureReceiver(promiscuous: Bool, multicast: Bool, filter: InlineArray<8, UInt8>) {
    self.promiscuous = promiscuous
    for index in 0..<8 { write8(Rtl8139Register.multicast + UInt32(index), filter[index]) }
    var configuration =
      Rtl8139ReceiveConfiguration.acceptPhysicalMatch | Rtl8139ReceiveConfiguration.acceptBroadcast
      | Rtl8139ReceiveConfiguration.wrap | Rtl8139ReceiveConfiguration.fifoAndBurst
    if promiscuous { configuration |= Rtl8139ReceiveConfiguration.acceptAll }
    if multicast { configuration |= Rtl8139ReceiveConfiguration.acceptMulticast }
    write32(Rtl8139Register.receiveConfiguration, configuration)
    guard !plus else { return }  // the C+ rings are not touched by the configuration
    // QEMU's card starts its C-mode ring again at 0 when the configuration is written: so
    // does the driver (frames still in the ring are lost). CAPR is written, not left at
    // its reset value: the card takes frames it held back (its ring was full before the
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
      if plus { drainReceiveDescriptors() } else { drainReceiveRing() }
    }
    if status & (Rtl8139Interrupt.receiveOverflow | Rtl8139Interrupt.fifoOverflow) != 0 {
      counts.overflows &+= 1
      // Frames the card could not store anywhere (C+: no descriptor was free).
      counts.missed &+= Int(read32(Rtl8139Register.missedPackets) & 0x00FF_FFFF)
      write32(Rtl8139Register.missedPackets, 0)
    }
  }

  /// Queues a received frame (a copy), or counts it dropped (queue full) or an error (too
  /// long to deliver whole).
  private func deliver(_ frame: UnsafeRawPointer, length: Int) {
    guard length <= 1514 else {
      counts.errors &+= 1
      return
    }
    guard let slot = freeSlots.popLast() else {
      counts.drops &+= 1
      return
    }
    (receiveSlots + slot * Self.slotSize).copyMemory(from: frame, byteCount: length)
    slotLengths[slot] = length
    queued[(firstQueued + queuedCount) % Self.queueCapacity] = slot
    queuedCount += 1
    counts.framesIn &+= 1
    counts.bytesIn &+= length
    _ = try? waiting.signal()
  }

  private func drainReceiveRing() {
    let ring = receiveBuffer!.address.assumingMemoryBound(to: UInt8.self)
    while read8(Rtl8139Register.command) & Rtl8139Command.bufferEmpty == 0 {
      let packet = receiveRing.next { offset in UInt16(ring[offset]) | UInt16(ring[offset + 1]) << 8 }
      switch packet {
      case .bad:
        // Not a packet the card could have written: start the receiver again from 0.
        counts.errors &+= 1
        write8(Rtl8139Register.command, Rtl8139Command.transmitterEnable)
        write8(Rtl8139Register.command, Rtl8139Command.receiverEnable | Rtl8139Command.transmitterEnable)
        receiveRing.reset()
        write16(Rtl8139Register.readAddress, 0xFFF0)
        return
      case .frame(let offset, let length):
        // No free slot: the frame stays in the ring until one is given back. The ring then
        // fills and QEMU holds frames back instead of losing them (C mode's flow control).
        guard !freeSlots.isEmpty else {
          receiveStalled = true
          return
        }
        deliver(ring + offset, length: length)
        write16(Rtl8139Register.readAddress, receiveRing.advance(pastLength: length + 4))
      }
    }
  }

  private func drainReceiveDescriptors() {
    let ring = receiveRingMemory!
    while true {
      let descriptor = receiveDescriptors.next * Rtl8139Descriptor.size
      guard let received = receiveDescriptors.take(first: ring.word(at: descriptor)) else { return }
      switch received {
      case .bad:
        counts.errors &+= 1
      case .frame(let index, let length):
        deliver(
          ring.address + Self.receiveDescriptorBytes + index * Rtl8139ReceiveDescriptors.bufferSize,
          length: length
        )
      }
      ring.setWord(0, at: descriptor + 4)
      ring.setWord(Rtl8139ReceiveDescriptors.ready(descriptor / Rtl8139Descriptor.size), at: descriptor)
    }
  }

  private func completeTransmissions() {
    if plus {
      while let oldest = transmitDescriptors.oldest {
        let (done, failed) = transmitDescriptors.complete(
          first: transmitMemory.word(at: oldest * Rtl8139Descriptor.size))
        guard done else { break }
        if failed { counts.errors &+= 1 }
      }
      return
    }
    while let oldest = transmitRing.oldest {
      let status = read32(Rtl8139Register.transmitStatus + UInt32(oldest) * 4)
      let (done, failed) = transmitRing.complete(status: status)
      guard done else { break }
      if failed { counts.errors &+= 1 }
    }
  }

  // MARK: what Device offers

  private var hasRoom: Bool { plus ? transmitDescriptors.hasRoom : transmitRing.hasRoom }

  func send(frame: UnsafeRawBufferPointer, checksums: Bool) -> UInt {
    guard frame.count >= 14, frame.count <= 1514 else { return 0 }
    // Wait (up to 100 ms) for a free descriptor.
    for _ in 0..<100 where !hasRoom {
      completeTransmissions()
      if !hasRoom { try? Required.clock.sleep(milliseconds: 1) }
    }
    let length = max(frame.count, Rtl8139TransmitRing.minimumFrame)
    let buffer: UnsafeMutableRawPointer
    if plus {
      guard let (index, first) = transmitDescriptors.take(length: length, checksums: checksums) else {
        counts.drops &+= 1
        return 0
      }
      buffer =
        transmitMemory.address + Self.transmitDescriptorBytes + index * Rtl8139TransmitDescriptors.bufferSize
      fill(buffer, from: frame, length: length)
      transmitMemory.setWord(first, at: index * Rtl8139Descriptor.size)  // the card's from here
      write8(Rtl8139Register.transmitPoll, Rtl8139TransmitDescriptors.pollNormal)
    } else {
      guard let (descriptor, status) = transmitRing.take(length: frame.count) else {
        counts.drops &+= 1
        return 0
      }
      buffer = transmitMemory.address + descriptor * 2048
      fill(buffer, from: frame, length: length)
      // This mode's card computes no checksums: the driver does.
      if checksums {
        InternetChecksum.fill(frame: UnsafeMutableRawBufferPointer(start: buffer, count: length))
      }
      write32(Rtl8139Register.transmitStatus + UInt32(descriptor) * 4, status)
    }
    counts.framesOut &+= 1
    counts.bytesOut &+= frame.count
    return 1
  }

  /// Copies `frame` into a transmit buffer and pads it with zeros to `length`.
  private func fill(_ buffer: UnsafeMutableRawPointer, from frame: UnsafeRawBufferPointer, length: Int) {
    buffer.copyMemory(from: frame.baseAddress!, byteCount: frame.count)
    if length > frame.count {
      (buffer + frame.count).initializeMemory(as: UInt8.self, repeating: 0, count: length - frame.count)
    }
  }

  /// The oldest queued slot, waiting for one (nil if the wait failed).
  private func nextQueued() -> Int? {
    try? waiting.wait()  // holds no lock while it waits
    guard queuedCount > 0 else { return nil }
    let slot = queued[firstQueued]
    firstQueued = (firstQueued + 1) % Self.queueCapacity
    queuedCount -= 1
    return slot
  }

  func receive(frame: UnsafeMutableRawBufferPointer) -> Int {
    guard let slot = nextQueued() else { return 0 }
    defer {
      freeSlots.append(slot)
      resumeReceiving()
    }
    // Never cut short: a caller whose buffer is too small (the kernel passes the size it
    // gave, not the declared 1,514) gets nothing, and the frame is counted dropped.
    let length = slotLengths[slot]
    guard length <= frame.count, let destination = frame.baseAddress else {
      counts.drops &+= 1
      return 0
    }
    destination.copyMemory(from: receiveSlots + slot * Self.slotSize, byteCount: length)
    return length
  }

  /// The next queued frame, lent to port `port`: slot × 65,536 + length; 0 if the wait
  /// failed.
  func lend(to port: Int) -> UInt {
    guard let slot = nextQueued() else { return 0 }
    lentTo[slot] = port
    return UInt(slot) << 16 | UInt(slotLengths[slot])
  }

  /// The most receive slots one port holds: the others keep receiving.
  static let mostLentToOnePort = 32

  /// Port `port` gives `slot` back; 1, or 0 if it does not hold it.
  func release(_ slot: UInt, from port: Int) -> UInt {
    guard slot < UInt(Self.queueCapacity), lentTo[Int(slot)] == port else { return 0 }
    lentTo[Int(slot)] = 0
    freeSlots.append(Int(slot))
    resumeReceiving()
    return 1
  }

  /// A slot came back: frames left in the ring for want of one are taken now (C mode; the
  /// card raises no interrupt for frames it already stored).
  private func resumeReceiving() {
    guard receiveStalled else { return }
    receiveStalled = false
    drainReceiveRing()
  }

  /// The C-mode ring holds frames left there for want of a free slot.
  private var receiveStalled = false

  /// Port `port` went: the slots lent to it come back, and its number is free again.
  func releaseAll(from port: Int) {
    for slot in 0..<Self.queueCapacity where lentTo[slot] == port {
      lentTo[slot] = 0
      freeSlots.append(slot)
    }
    resumeReceiving()
    if port >= 1 && port <= portsInUse.count { portsInUse[port - 1] = false }
  }

  /// Ports open now (numbers 1...8).
  private var portsInUse = [Bool](repeating: false, count: 8)

  /// A free port number (1...8), now taken; nil if 8 are open.
  func takePortNumber() -> Int? {
    guard let free = portsInUse.firstIndex(of: false) else { return nil }
    portsInUse[free] = true
    return free + 1
  }

  /// A read-only view of the receive slots, for a port's holder.
  func readOnlyReceiveSlots() -> Memory? { (try? receiveMemory.readOnly()) ?? nil }

  var linkUp: Bool { read16(Rtl8139Register.basicModeStatus) & rtl8139LinkUp != 0 }

  func counters(text: UnsafeMutableRawBufferPointer) -> Int {
    let line: KernelMessage =
      "frames in \(counts.framesIn) (\(counts.bytesIn) bytes), out \(counts.framesOut) (\(counts.bytesOut) bytes), errors \(counts.errors), drops \(counts.drops), overflows \(counts.overflows), missed \(counts.missed)"
    return line.withBytes { bytes in
      let count = min(bytes.count, text.count)
      for index in 0..<count { text[index] = bytes[index] }
      return count
    }
  }
}

/// One client's port for frames through shared memory (FramePort): receive slots lent to
/// it by number, and 16 send slots of its own.
final class Port: FramePortImplementation {
  private let card: Card
  let number: Int
  private var held = 0
  private let sendMemory: Memory
  private let sendAddress: UInt

  init?(card: Card, number: Int) {
    guard let memory = (try? Required.memory.allocate(bytes: UInt(16 * Card.slotSize))) ?? nil,
      let address = try? Required.memory.map(memory: memory, writable: 1), address != 0
    else { return nil }
    self.card = card
    self.number = number
    sendMemory = memory
    sendAddress = address
  }

  deinit {
    card.releaseAll(from: number)
    _ = try? Required.memory.unmap(address: sendAddress)
    _ = sendMemory.release()
  }

  func receiveSlots() -> Memory? { card.readOnlyReceiveSlots() }

  /// Receives waiting now: the wait gives the driver's lock up, so several threads may be
  /// in `receive` at once, and each counts against the limit before it waits.
  private var pending = 0

  func receive() -> UInt {
    guard held + pending < Card.mostLentToOnePort else { return 0 }
    pending += 1
    let word = card.lend(to: number)
    pending -= 1
    if word != 0 { held += 1 }
    return word
  }

  func release(slot: UInt) -> UInt {
    let released = card.release(slot, from: number)
    held -= Int(released)
    return released
  }

  func sendSlots() -> Memory {
    _ = try? sendMemory.acquire()  // the caller takes this count; the port keeps its own
    return sendMemory
  }

  func send(slot: UInt, length: UInt, checksums: UInt) -> UInt {
    guard slot < 16, length <= 1514 else { return 0 }
    return card.send(
      frame: UnsafeRawBufferPointer(
        start: UnsafeRawPointer(bitPattern: sendAddress)! + Int(slot) * Card.slotSize, count: Int(length)),
      checksums: checksums != 0)
  }
}

/// The driver's main object: the NetworkDevice the layers above hold.
final class Device: NetworkDeviceImplementation {
  let card: Card
  let line: InterruptLine
  let mastering: BusMastering

  init(card: Card, line: InterruptLine, mastering: BusMastering, faultsAllowed: Bool) {
    self.card = card
    self.line = line
    self.mastering = mastering
    self.faultsAllowed = faultsAllowed
  }

  deinit {
    _ = try? line.detach()
    _ = mastering.release()
  }

  func send(frame: UnsafeRawBufferPointer) -> UInt { card.send(frame: frame, checksums: false) }
  func sendWithChecksums(frame: UnsafeRawBufferPointer) -> UInt { card.send(frame: frame, checksums: true) }
  func receive(frame: UnsafeMutableRawBufferPointer) -> Int { card.receive(frame: frame) }

  func openPort() -> FramePort? {
    guard let number = card.takePortNumber() else { return nil }
    guard let port = Port(card: card, number: number), let exported = FramePort.export(port) else {
      card.releaseAll(from: number)
      return nil
    }
    return exported
  }

  func macAddress(address: UnsafeMutableRawBufferPointer) -> Int {
    for index in 0..<min(6, address.count) { address[index] = card.mac[index] }
    return min(6, address.count)
  }

  func mtu() -> UInt { 1500 }
  func linkUp() -> UInt { card.linkUp ? 1 : 0 }
  func counters(text: UnsafeMutableRawBufferPointer) -> Int { card.counters(text: text) }

  func setReceiveFilter(promiscuous: UInt, allMulticast: UInt) -> UInt {
    card.setReceiveFilter(promiscuous: promiscuous != 0, allMulticast: allMulticast != 0)
    return 1
  }

  func setMulticastList(addresses: UnsafeRawBufferPointer) -> UInt {
    card.setMulticastList(addresses: addresses)
  }

  /// Whether `fault` may fault (the test setting `faults on`): otherwise any client could
  /// stop the driver.
  let faultsAllowed: Bool

  func fault() {
    guard faultsAllowed else { return }
    // A Swift trap, contained in either placement (a wild write is not, in kernel mode).
    fatalError("rtl8139: fault on request")
  }
}

/// The composition's setting `name` for this instance (empty if none).
func setting(_ name: StaticString) -> [UInt8] {
  ServerRuntime.setting(name) { name, value throws(CallError) in
    try Required.settings.value(name: name, value: value)
  }
}

/// Whether `value` is `text`.
func `is`(_ value: [UInt8], _ text: StaticString) -> Bool {
  value.elementsEqual(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
}

func start() -> NetworkDevice {
  let device = Required.device
  let identity = UInt32(truncatingIfNeeded: (try? device.identity()) ?? 0)
  guard identity == 0x8139_10EC else {
    say(
      "rtl8139: the device bound to `device` is \(hexDigits: identity & 0xFFFF, width: 4):\(hexDigits: identity >> 16, width: 4), not an RTL8139 (10ec:8139)"
    )
    fatalError("rtl8139: wrong device")
  }
  let mode = setting("mode")
  let loopback = setting("loopback")
  let faults = setting("faults")
  guard mode.isEmpty || `is`(mode, "c") || `is`(mode, "c+"), loopback.isEmpty || `is`(loopback, "on"),
    faults.isEmpty || `is`(faults, "on")
  else {
    say("rtl8139: the setting `mode` must be c or c+, and `loopback` and `faults` on if set")
    fatalError("rtl8139: bad setting")
  }
  let plus = `is`(mode, "c+")
  guard let ports = (try? device.ports(bar: 0)) ?? nil else {
    say("rtl8139: the card's I/O ports (BAR 0) were not given")
    fatalError("rtl8139: the card's I/O ports (BAR 0) were not given")
  }
  // The card stops first: restarted, it may still be receiving into the failed instance's
  // memory, which the kernel hands out again, and may do so once it masters the bus.
  _ = try? ports.write8(offset: UInt(Rtl8139Register.command), value: UInt(Rtl8139Command.reset))
  // After a failure the old instance's permission ends on the bus server's worker: wait
  // for it (up to a second) rather than fail.
  var permission: BusMastering? = nil
  for attempt in 0..<100 where permission == nil {
    if attempt > 0 { try? Required.clock.sleep(milliseconds: 10) }
    permission = (try? device.enableBusMastering()) ?? nil
  }
  guard let mastering = permission else {
    say("rtl8139: the PCI bus server refused bus mastering (DMA) for this card; it cannot work without it")
    fatalError("rtl8139: no bus mastering")
  }
  guard let card = Card(ports: ports, plus: plus, loopback: !loopback.isEmpty, mastering: mastering) else {
    say("rtl8139: no DMA memory for the card's rings and buffers")
    fatalError("rtl8139: no DMA memory for the card's rings and buffers")
  }
  guard let line = (try? device.interrupt()) ?? nil, let handler = InterruptHandler.export(card),
    (try? line.attach(handler: handler)) == 1
  else {
    say("rtl8139: the card's interrupt line could not be attached")
    fatalError("rtl8139: the card's interrupt line could not be attached")
  }
  var message: KernelMessage = "rtl8139: ready, MAC "
  for (index, byte) in card.mac.enumerated() {
    if index > 0 { message.append(":") }
    message.append(hex: byte, width: 2, prefix: false)
  }
  message.append(plus ? ", C+ mode" : ", C mode")
  if !loopback.isEmpty { message.append(", loopback") }
  say(message)
  return NetworkDevice.export(
    Device(card: card, line: line, mastering: mastering, faultsAllowed: !faults.isEmpty))!
}
