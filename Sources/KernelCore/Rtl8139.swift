// Rtl8139: the RTL8139's registers and the bookkeeping of its C-mode receive ring and
// transmit descriptors, for the driver server and its host tests.
//
// Contract: register offsets, widths and bits live here only. `Rtl8139ReceiveRing` reads
// packets the card wrote into the receive buffer (status, length including the 4-byte
// CRC, frame, CRC, each packet starting at a multiple of 4) and says what to write to
// CAPR after each (the card's "off by 16"); a header that cannot be a good packet is
// refused with a reason, and the driver resets the receiver. The ring runs with WRAP set,
// so a packet never wraps in the buffer: the buffer must have `wrapSlack` bytes beyond the
// ring for the card to write past the end. `Rtl8139TransmitRing` hands out the four
// transmit descriptors strictly round robin, as the card uses them, and builds the status
// word that starts a transmission (frames padded to 60 bytes, refused above 1,792).
//
// C+ mode (the 8139C+'s descriptor rings, switched on for good by any write to CpCmd
// until a reset) is `Rtl8139ReceiveDescriptors` and `Rtl8139TransmitDescriptors`: rings
// of 16-byte descriptors in DMA memory whose first word carries ownership (set: the
// card's), end of ring, first/last segment, the length and, for transmission, which
// checksums the card fills in. Each frame takes one descriptor both ways. The multicast
// filter's bit for an address is `Rtl8139MulticastFilter.bit(for:)`.

/// Register offsets and bits (QEMU's hw/net/rtl8139.c and the datasheet agree on these).
public enum Rtl8139Register {
  /// MAC address, 6 bytes (8-bit reads).
  public static let macAddress: UInt32 = 0x00
  /// Multicast filter, 8 bytes.
  public static let multicast: UInt32 = 0x08
  /// Transmit status of descriptor 0...3, 32-bit (0x10 + 4 * descriptor).
  public static let transmitStatus: UInt32 = 0x10
  /// Transmit start address (physical) of descriptor 0...3, 32-bit (0x20 + 4 * descriptor).
  public static let transmitAddress: UInt32 = 0x20
  /// Receive buffer start (physical), 32-bit.
  public static let receiveBuffer: UInt32 = 0x30
  /// Command, 8-bit.
  public static let command: UInt32 = 0x37
  /// Current address of packet read ("CAPR"), 16-bit.
  public static let readAddress: UInt32 = 0x38
  /// Current buffer address (where the card writes next), 16-bit.
  public static let writeAddress: UInt32 = 0x3A
  /// Interrupt mask, 16-bit.
  public static let interruptMask: UInt32 = 0x3C
  /// Interrupt status, 16-bit, write 1 to clear.
  public static let interruptStatus: UInt32 = 0x3E
  /// Transmit configuration, 32-bit.
  public static let transmitConfiguration: UInt32 = 0x40
  /// Receive configuration, 32-bit.
  public static let receiveConfiguration: UInt32 = 0x44
  /// Missed packets counter, 24 bits valid; a 32-bit write clears it.
  public static let missedPackets: UInt32 = 0x4C
  /// Basic mode status (the PHY's), 16-bit; bit 2 is the link.
  public static let basicModeStatus: UInt32 = 0x64
  /// C+ mode: transmit poll, 8-bit (write `Rtl8139TransmitDescriptors.pollNormal`).
  public static let transmitPoll: UInt32 = 0xD9
  /// C+ command, 16-bit (any write switches the card to C+ mode until a reset).
  public static let cPlusCommand: UInt32 = 0xE0
  /// C+ mode: receive descriptor ring (physical), low and high 32-bit words.
  public static let receiveRingLow: UInt32 = 0xE4
  /// See `receiveRingLow`.
  public static let receiveRingHigh: UInt32 = 0xE8
  /// C+ mode: transmit descriptor ring (physical), low and high 32-bit words (the C-mode
  /// transmit address registers 0 and 1).
  public static let transmitRingLow: UInt32 = 0x20
  /// See `transmitRingLow`.
  public static let transmitRingHigh: UInt32 = 0x24
}

/// Transmit configuration bits.
public enum Rtl8139TransmitConfiguration {
  /// The largest DMA burst (2 KiB).
  public static let largestBurst: UInt32 = 0x0000_0700
  /// Frames sent go to the card's own receiver instead of the link.
  public static let loopback: UInt32 = 0x0006_0000
}

/// C+ command register bits.
public enum Rtl8139CPlusCommand {
  /// The C+ transmitter.
  public static let transmitterEnable: UInt16 = 0x0001
  /// The C+ receiver.
  public static let receiverEnable: UInt16 = 0x0002
  /// Receive checksum checking (QEMU's card accepts the bit and checks nothing).
  public static let receiveChecksum: UInt16 = 0x0020
}

/// The basic mode status bit that says the link is up.
public let rtl8139LinkUp: UInt16 = 0x0004

/// Command register bits.
public enum Rtl8139Command {
  /// Resets the chip (clears itself when done).
  public static let reset: UInt8 = 0x10
  /// Enables the receiver.
  public static let receiverEnable: UInt8 = 0x08
  /// Enables the transmitter.
  public static let transmitterEnable: UInt8 = 0x04
  /// Set while the receive buffer is empty.
  public static let bufferEmpty: UInt8 = 0x01
}

/// Interrupt status and mask bits.
public enum Rtl8139Interrupt {
  /// A packet was received.
  public static let receiveOK: UInt16 = 0x0001
  /// A packet was received with an error.
  public static let receiveError: UInt16 = 0x0002
  /// A packet was sent.
  public static let transmitOK: UInt16 = 0x0004
  /// A transmission was aborted.
  public static let transmitError: UInt16 = 0x0008
  /// The receive ring was full.
  public static let receiveOverflow: UInt16 = 0x0010
  /// The link went up or down.
  public static let linkChange: UInt16 = 0x0020
  /// The receive FIFO overflowed.
  public static let fifoOverflow: UInt16 = 0x0040
  /// The timer expired.
  public static let timeout: UInt16 = 0x4000
  /// A PCI bus error.
  public static let systemError: UInt16 = 0x8000
  /// What the driver asks for: receive events only. Sent descriptors are reclaimed when
  /// `send` needs one (an interrupt per sent frame cost more than the rest of sending).
  public static let handled: UInt16 = receiveOK | receiveError | receiveOverflow | linkChange | fifoOverflow
  /// C mode's mask: without RxOverflow, QEMU holds frames back while the ring is full
  /// (its `can_receive` says no) instead of dropping them, so a driver that leaves frames
  /// in the ring while it has no free slot loses none (but for a frame that finds between
  /// 1,514 and 1,524 bytes free: QEMU checks the room twice, differently, and drops it).
  public static let handledWithFlowControl: UInt16 = handled & ~receiveOverflow
}

/// Receive configuration bits.
public enum Rtl8139ReceiveConfiguration {
  /// Every destination address (promiscuous).
  public static let acceptAll: UInt32 = 0x01
  /// Frames to the card's own address.
  public static let acceptPhysicalMatch: UInt32 = 0x02
  /// Multicast frames the filter lets through.
  public static let acceptMulticast: UInt32 = 0x04
  /// Broadcast frames.
  public static let acceptBroadcast: UInt32 = 0x08
  /// Packets run past the ring's end instead of wrapping to offset 0.
  public static let wrap: UInt32 = 0x80
  /// The ring size: 8 KiB << this field (bits 12:11); 0 here (8 KiB).
  public static let ringSizeShift: UInt32 = 11
  /// No receive FIFO threshold, unlimited DMA burst.
  public static let fifoAndBurst: UInt32 = 0x0000_E700
}

/// The C-mode receive ring.
public struct Rtl8139ReceiveRing {
  /// Bytes of the ring (RCR's size field 0).
  public static let size = 8192
  /// Bytes beyond the ring the card may write with WRAP set (a whole frame and its header).
  public static let wrapSlack = 16 + 1536
  /// The receive status bit that marks a good packet.
  public static let statusOK: UInt16 = 0x0001
  /// Longest packet length the card reports: 1,514-byte frame, a VLAN tag and the CRC.
  public static let maximumLength = 1522
  /// Shortest: 60 bytes padded by the sender (this card does not strip padding) and the CRC.
  public static let minimumLength = 64

  /// Where the next packet starts in the ring.
  public private(set) var readOffset = 0

  /// An empty ring.
  public init() {}

  /// A packet at the read offset: where its frame starts and how long it is (without the
  /// CRC), or why it cannot be one.
  public enum Packet: Equatable {
    case frame(offset: Int, length: Int)
    case bad(status: UInt16, length: Int)
  }

  /// Reads the header at the read offset through `read16(offset)` (little-endian 16-bit
  /// words of the ring buffer).
  public func next(read16: (Int) -> UInt16) -> Packet {
    let status = read16(readOffset)
    let length = Int(read16(readOffset + 2))
    guard status & Self.statusOK != 0, length >= Self.minimumLength, length <= Self.maximumLength else {
      return .bad(status: status, length: length)
    }
    return .frame(offset: readOffset + 4, length: length - 4)
  }

  /// Moves past the packet whose length field was `length` (frame and CRC) and returns the
  /// value to write to CAPR: the new read offset less 16 (the card's convention), modulo
  /// the ring.
  public mutating func advance(pastLength length: Int) -> UInt16 {
    readOffset = (readOffset + 4 + length + 3) & ~3
    readOffset %= Self.size
    return UInt16(truncatingIfNeeded: (readOffset &- 16) & 0xFFFF)
  }

  /// After a receiver reset: the card starts again at offset 0.
  public mutating func reset() { readOffset = 0 }
}

/// The four C-mode transmit descriptors, used strictly in order.
public struct Rtl8139TransmitRing {
  /// Descriptors the card has.
  public static let descriptors = 4
  /// Frames are padded to this (the card does not).
  public static let minimumFrame = 60
  /// The largest the size field takes.
  public static let maximumFrame = 1792
  /// Transmit status bits.
  public static let own: UInt32 = 1 << 13
  /// The descriptor's frame was sent.
  public static let transmitOK: UInt32 = 1 << 15
  /// The FIFO ran dry while sending.
  public static let underrun: UInt32 = 1 << 14
  /// The transmission was aborted.
  public static let aborted: UInt32 = 1 << 30

  /// The descriptor the next frame goes to.
  public private(set) var next = 0
  /// Frames handed to the card and not yet seen finished.
  public private(set) var inFlight = 0

  /// Empty descriptors.
  public init() {}

  /// Whether a descriptor is free for another frame.
  public var hasRoom: Bool { inFlight < Self.descriptors }

  /// Takes the next descriptor for a frame of `length` bytes: its number and the status
  /// word that starts it (size padded to 60, early-transmit threshold 0, OWN clear); nil
  /// if all four are busy or the frame is longer than the card takes.
  public mutating func take(length: Int) -> (descriptor: Int, status: UInt32)? {
    guard hasRoom, length > 0, length <= Self.maximumFrame else { return nil }
    let descriptor = next
    next = (next + 1) % Self.descriptors
    inFlight += 1
    return (descriptor, UInt32(max(length, Self.minimumFrame)))
  }

  /// The oldest descriptor in flight, to check for completion (nil if none).
  public var oldest: Int? {
    inFlight == 0 ? nil : (next - inFlight + Self.descriptors) % Self.descriptors
  }

  /// The oldest descriptor's status word was read: whether it is done (OK, or failed:
  /// `failed` tells), and if so it is free again.
  public mutating func complete(status: UInt32) -> (done: Bool, failed: Bool) {
    guard inFlight > 0, status & Self.own != 0 else { return (false, false) }
    inFlight -= 1
    return (true, status & Self.transmitOK == 0)
  }
}

/// Bits of a C+ descriptor's first word (both directions unless named otherwise).
public enum Rtl8139Descriptor {
  /// Bytes per descriptor: command/status, VLAN, buffer address low, high.
  public static let size = 16
  /// The card owns the descriptor (the driver gave it; the card clears it when done).
  public static let owned: UInt32 = 1 << 31
  /// The last descriptor of the ring: the card goes back to the first after it.
  public static let endOfRing: UInt32 = 1 << 30
  /// The descriptor holds the first segment of a frame.
  public static let firstSegment: UInt32 = 1 << 29
  /// The descriptor holds the last segment of a frame.
  public static let lastSegment: UInt32 = 1 << 28
  /// Transmit: the card fills in the IPv4 header checksum.
  public static let ipChecksum: UInt32 = 1 << 18
  /// Transmit: the card fills in the UDP checksum.
  public static let udpChecksum: UInt32 = 1 << 17
  /// Transmit: the card fills in the TCP checksum.
  public static let tcpChecksum: UInt32 = 1 << 16
  /// Transmit: an error summary (underrun, collision, link failure).
  public static let transmitError: UInt32 = 1 << 23
  /// Receive: a CRC error.
  public static let crcError: UInt32 = 1 << 18
  /// Receive: a runt.
  public static let runt: UInt32 = 1 << 19
  /// Receive: the length field (the frame and its CRC), or the buffer's size when given.
  public static let receiveLength: UInt32 = 0x1FFF
  /// Transmit: the length field.
  public static let transmitLength: UInt32 = 0xFFFF
}

/// The C+ receive ring: `count` descriptors, each with a buffer of `bufferSize` bytes.
public struct Rtl8139ReceiveDescriptors {
  /// Descriptors in the ring.
  public static let count = 64
  /// Bytes per buffer: the longest frame the interface passes (1,514), a VLAN tag, the
  /// CRC, rounded up to 8.
  public static let bufferSize = 1528

  /// The descriptor the card fills next (the driver looks there for the next frame).
  public private(set) var next = 0

  /// An empty ring.
  public init() {}

  /// The first word that gives descriptor `index` (back) to the card.
  public static func ready(_ index: Int) -> UInt32 {
    Rtl8139Descriptor.owned | (index == count - 1 ? Rtl8139Descriptor.endOfRing : 0) | UInt32(bufferSize)
  }

  /// What a descriptor holds once the card is done with it.
  public enum Received: Equatable {
    /// A frame of `length` bytes (without the CRC) in descriptor `index`'s buffer.
    case frame(index: Int, length: Int)
    /// Descriptor `index` holds no good frame (an error bit, a split or impossible length).
    case bad(index: Int, status: UInt32)
  }

  /// Reads descriptor `next` given its first word: nil while the card still owns it;
  /// else what it holds, and `next` moves on (the driver gives it back with `ready`).
  public mutating func take(first word: UInt32) -> Received? {
    guard word & Rtl8139Descriptor.owned == 0 else { return nil }
    let index = next
    next = (next + 1) % Self.count
    let whole = Rtl8139Descriptor.firstSegment | Rtl8139Descriptor.lastSegment
    let length = Int(word & Rtl8139Descriptor.receiveLength)
    guard word & whole == whole, word & (Rtl8139Descriptor.crcError | Rtl8139Descriptor.runt) == 0,
      length >= Rtl8139ReceiveRing.minimumLength, length <= Self.bufferSize
    else { return .bad(index: index, status: word) }
    return .frame(index: index, length: length - 4)
  }

  /// After the receiver was enabled again: the card starts at descriptor 0.
  public mutating func reset() { next = 0 }
}

/// The C+ transmit ring: `count` descriptors used in order, each one frame.
public struct Rtl8139TransmitDescriptors {
  /// Descriptors in the ring (the card takes at most 64).
  public static let count = 16
  /// Bytes per buffer.
  public static let bufferSize = 1536
  /// The transmit poll value that starts the normal-priority ring.
  public static let pollNormal: UInt8 = 0x40

  /// The descriptor the next frame goes to.
  public private(set) var next = 0
  /// Frames handed to the card and not yet seen finished.
  public private(set) var inFlight = 0

  /// An empty ring.
  public init() {}

  /// Whether a descriptor is free for another frame.
  public var hasRoom: Bool { inFlight < Self.count }

  /// The oldest descriptor in flight, to check for completion (nil if none).
  public var oldest: Int? { inFlight == 0 ? nil : (next - inFlight + Self.count) % Self.count }

  /// Takes the next descriptor for a frame of `length` bytes (already padded to 60): its
  /// number and the first word that hands it to the card, asking for the IPv4, UDP and TCP
  /// checksums if `checksums`; nil if every descriptor is busy or the frame does not fit.
  public mutating func take(length: Int, checksums: Bool) -> (index: Int, first: UInt32)? {
    guard hasRoom, length >= Rtl8139TransmitRing.minimumFrame, length <= Self.bufferSize else { return nil }
    let index = next
    next = (next + 1) % Self.count
    inFlight += 1
    var word =
      Rtl8139Descriptor.owned | Rtl8139Descriptor.firstSegment | Rtl8139Descriptor.lastSegment
      | UInt32(length)
    if index == Self.count - 1 { word |= Rtl8139Descriptor.endOfRing }
    if checksums {
      word |= Rtl8139Descriptor.ipChecksum | Rtl8139Descriptor.udpChecksum | Rtl8139Descriptor.tcpChecksum
    }
    return (index, word)
  }

  /// The oldest descriptor's first word was read: whether it is done (and whether it
  /// failed); if done it is free again.
  public mutating func complete(first word: UInt32) -> (done: Bool, failed: Bool) {
    guard inFlight > 0, word & Rtl8139Descriptor.owned == 0 else { return (false, false) }
    inFlight -= 1
    return (true, word & Rtl8139Descriptor.transmitError != 0)
  }
}

/// The card's 64-bit multicast filter (MAR0-7): a multicast frame is taken when the bit
/// its destination hashes to is set.
public enum Rtl8139MulticastFilter {
  /// The filter bit (0...63) for a 6-byte address: the top six bits of the Ethernet CRC
  /// computed most significant bit first (polynomial 0x04C11DB7, bytes fed least
  /// significant bit first, no final inversion), as the chip and QEMU compute it.
  public static func bit(for address: UnsafeRawBufferPointer) -> Int {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in address.prefix(6) {
      var bits = byte
      for _ in 0..<8 {
        let carry = (crc >> 31) ^ UInt32(bits & 1)
        crc <<= 1
        bits >>= 1
        if carry != 0 { crc ^= 0x04C1_1DB7 }
      }
    }
    return Int(crc >> 26)
  }

  /// The eight filter bytes that take exactly the frames to `addresses` (6 bytes each;
  /// other addresses hashing to the same bits get through too, as on any such filter).
  public static func bytes(for addresses: UnsafeRawBufferPointer) -> InlineArray<8, UInt8> {
    var filter: InlineArray<8, UInt8> = .init(repeating: 0)
    var offset = 0
    while offset + 6 <= addresses.count {
      let bit = Self.bit(for: UnsafeRawBufferPointer(rebasing: addresses[offset..<(offset + 6)]))
      filter[bit >> 3] |= UInt8(1) << UInt8(bit & 7)
      offset += 6
    }
    return filter
  }
}
