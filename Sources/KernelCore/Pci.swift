// Pci: decoding a PCI function's configuration header (type 0 and bridges), sizing its
// base address registers, and naming its class, for the PCI bus server and its host tests.
//
// Contract: `PciFunction(read:)` reads the header through `read(offset)` (32-bit words at
// offsets that are multiples of 4), nil when no device answers (vendor 0xFFFF). BARs are
// decoded from their values; their sizes come from `PciBar.size(written:)`, given what a
// BAR reads back after all ones were written to it (the bus server does the writing, with
// decoding switched off, and restores the BAR). Offsets of the header live here only.

/// Byte offsets of the configuration header's fields.
public enum PciOffset {
  /// Vendor (low 16 bits) and device (high 16 bits).
  public static let identity: UInt32 = 0x00
  /// Command (low 16 bits) and status (high 16 bits).
  public static let commandAndStatus: UInt32 = 0x04
  /// Revision, programming interface, subclass, class (low to high byte).
  public static let classAndRevision: UInt32 = 0x08
  /// Cache line size, latency timer, header type (bit 7: several functions), BIST.
  public static let headerType: UInt32 = 0x0C
  /// The first of six BARs (type 0 headers; bridges have two).
  public static let firstBar: UInt32 = 0x10
  /// Bridges: primary, secondary and subordinate bus numbers (low to high byte).
  public static let bridgeBuses: UInt32 = 0x18
  /// Interrupt line (low byte) and interrupt pin (next byte: 1 = INTA# ... 4 = INTD#).
  public static let interrupt: UInt32 = 0x3C
}

/// The command register's bits the bus server uses.
public enum PciCommand {
  /// The function answers I/O-space accesses.
  public static let ioSpace: UInt32 = 1 << 0
  /// The function answers memory-space accesses.
  public static let memorySpace: UInt32 = 1 << 1
  /// The function may master the bus (DMA).
  public static let busMaster: UInt32 = 1 << 2
}

/// One base address register.
public struct PciBar: Equatable, Sendable {
  /// What the BAR maps.
  public enum Kind: Equatable, Sendable {
    /// I/O ports.
    case io
    /// 32-bit memory.
    case memory32(prefetchable: Bool)
    /// The low half of a 64-bit BAR (the next BAR holds the high half).
    case memory64(prefetchable: Bool)
  }

  /// Which BAR (0...5).
  public var index: Int
  /// What it maps.
  public var kind: Kind
  /// The base address (the low 32 bits for a 64-bit BAR).
  public var address: UInt32
  /// Bytes it decodes (0: unused).
  public var size: UInt32

  /// A BAR from its value; its size 0 until sized.
  public init(index: Int, value: UInt32) {
    self.index = index
    if value & 1 != 0 {
      kind = .io
      address = value & ~3
    } else {
      let prefetchable = value & 8 != 0
      kind =
        (value >> 1) & 3 == 2 ? .memory64(prefetchable: prefetchable) : .memory32(prefetchable: prefetchable)
      address = value & ~15
    }
    size = 0
  }

  /// The size a BAR of `kind` decodes, from what it reads back after all ones were written
  /// (0 for an unimplemented BAR).
  public static func size(written readback: UInt32, kind: Kind) -> UInt32 {
    let mask: UInt32 = kind == .io ? ~3 : ~15
    let bits = readback & mask
    guard bits != 0 else { return 0 }
    return (~bits &+ 1) & (kind == .io ? 0xFFFF : 0xFFFF_FFFF)
  }
}

/// One function found on a bus.
public struct PciFunction: Sendable {
  /// Where it is: bus, device (0...31) and function (0...7).
  public var bus: UInt8
  /// The device number on its bus.
  public var device: UInt8
  /// The function number of its device.
  public var function: UInt8
  /// The vendor's identifier (0x10ec: Realtek).
  public var vendor: UInt16
  /// The vendor's device identifier (0x8139).
  public var deviceIdentifier: UInt16
  /// The base class (0x02: network controller).
  public var classCode: UInt8
  /// The subclass (0x00 with 0x02: Ethernet).
  public var subclass: UInt8
  /// The programming interface.
  public var programmingInterface: UInt8
  /// The revision.
  public var revision: UInt8
  /// The header type without the multi-function bit (0 device, 1 PCI-to-PCI bridge).
  public var headerType: UInt8
  /// Whether function 0 says the device has several functions.
  public var isMultiFunction: Bool
  /// The interrupt line the firmware routed it to.
  public var interruptLine: UInt8
  /// Its interrupt pin (0: none, 1 INTA# ... 4 INTD#).
  public var interruptPin: UInt8
  /// The BARs in use (a 64-bit BAR once, its high half skipped).
  public var bars: [PciBar]
  /// For a bridge: the bus behind it.
  public var secondaryBus: UInt8?

  /// Reads the header of the function at `bus:device.function` through `read`; nil if no
  /// function answers there.
  public init?(bus: UInt8, device: UInt8, function: UInt8, read: (UInt32) -> UInt32) {
    let identity = read(PciOffset.identity)
    guard identity & 0xFFFF != 0xFFFF, identity & 0xFFFF != 0 else { return nil }
    self.bus = bus
    self.device = device
    self.function = function
    vendor = UInt16(truncatingIfNeeded: identity)
    deviceIdentifier = UInt16(truncatingIfNeeded: identity >> 16)
    let classWord = read(PciOffset.classAndRevision)
    revision = UInt8(truncatingIfNeeded: classWord)
    programmingInterface = UInt8(truncatingIfNeeded: classWord >> 8)
    subclass = UInt8(truncatingIfNeeded: classWord >> 16)
    classCode = UInt8(truncatingIfNeeded: classWord >> 24)
    let header = UInt8(truncatingIfNeeded: read(PciOffset.headerType) >> 16)
    headerType = header & 0x7F
    isMultiFunction = header & 0x80 != 0
    let interrupt = read(PciOffset.interrupt)
    interruptLine = UInt8(truncatingIfNeeded: interrupt)
    interruptPin = UInt8(truncatingIfNeeded: interrupt >> 8)
    bars = []
    var index = 0
    let barCount = headerType == 1 ? 2 : (headerType == 0 ? 6 : 0)
    while index < barCount {
      let bar = PciBar(index: index, value: read(PciOffset.firstBar + UInt32(index) * 4))
      bars.append(bar)
      if case .memory64 = bar.kind { index += 1 }
      index += 1
    }
    secondaryBus = headerType == 1 ? UInt8(truncatingIfNeeded: read(PciOffset.bridgeBuses) >> 8) : nil
  }

  /// The class's name, as lspci says it for the classes QEMU's PCs have (else "class XX").
  public var className: StaticString {
    switch (classCode, subclass) {
    case (0x01, 0x01): "IDE interface"
    case (0x01, 0x06): "SATA controller"
    case (0x01, _): "Mass storage controller"
    case (0x02, 0x00): "Ethernet controller"
    case (0x02, _): "Network controller"
    case (0x03, 0x00): "VGA compatible controller"
    case (0x03, _): "Display controller"
    case (0x04, _): "Multimedia controller"
    case (0x06, 0x00): "Host bridge"
    case (0x06, 0x01): "ISA bridge"
    case (0x06, 0x04): "PCI bridge"
    case (0x06, 0x80): "Bridge"
    case (0x06, _): "Bridge"
    case (0x0C, 0x03): "USB controller"
    case (0x0C, 0x05): "SMBus"
    case (0x0C, _): "Serial bus controller"
    case (0x08, _): "System peripheral"
    default: "Unclassified device"
    }
  }

  /// One lspci-like line: "00:03.0 Ethernet controller [0200]: 10ec:8139 (rev 20) irq 11
  /// (INTA) bar0 io 0xc000 size 256 bar1 mem 0xfebf1000 size 256".
  public var summary: KernelMessage {
    var text: KernelMessage =
      "\(hexDigits: bus, width: 2):\(hexDigits: device, width: 2).\(function) \(className) [\(hexDigits: classCode, width: 2)\(hexDigits: subclass, width: 2)]: \(hexDigits: vendor, width: 4):\(hexDigits: deviceIdentifier, width: 4) (rev \(hexDigits: revision, width: 2))"
    if interruptPin != 0 {
      text.append(message: " irq \(interruptLine) (INT")
      text.append(byte: UInt8(ascii: "A") + (interruptPin - 1) % 4)
      text.append(")")
    }
    for bar in bars where bar.size != 0 {
      let kind: StaticString = bar.kind == .io ? "io" : "mem"
      text.append(message: " bar\(bar.index) \(kind) \(hex: bar.address) size \(bar.size)")
    }
    if let secondaryBus { text.append(message: " bus \(hexDigits: secondaryBus, width: 2) behind it") }
    return text
  }
}
