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
  /// Missed packets counter, 32-bit.
  public static let missedPackets: UInt32 = 0x4C
}

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
  /// What the driver asks for.
  public static let handled: UInt16 =
    receiveOK | receiveError | transmitOK | transmitError | receiveOverflow | linkChange | fifoOverflow
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
