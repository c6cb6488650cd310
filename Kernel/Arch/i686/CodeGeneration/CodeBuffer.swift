// CodeBuffer: a tiny i686 assembler for the generated call path: bytes written for a known
// run address, with labels that jumps go to (bound once, patched when bound).
//
// Contract: `emit*` append at `count`; a jump to a label not bound yet is patched by
// `bind`; `isComplete` says every jump was resolved (each generator checks it).

/// A place in code that jumps go to, bound once (`CodeBuffer.bind`); jumps written before
/// it is bound are patched then.
public struct CodeLabel {
  fileprivate let index: Int
}

/// The conditions of the jumps the generators use (x86 condition codes).
public enum JumpCondition: UInt8 {
  /// Unsigned below (carry set).
  case below = 0x2
  /// Unsigned above or equal (carry clear).
  case aboveOrEqual = 0x3
  /// Equal, zero.
  case equal = 0x4
  /// Not equal, not zero.
  case notEqual = 0x5
  /// Sign set (negative).
  case sign = 0x8
  /// Sign clear.
  case notSign = 0x9
  /// Unsigned above (carry and zero clear).
  case above = 0x7
  /// Signed less or equal (zero, or sign unlike overflow).
  case lessOrEqual = 0xE
  /// Signed greater (not zero, sign like overflow).
  case greater = 0xF
}

/// Bytes of machine code being written for a known run address.
public struct CodeBuffer {
  /// Where the code will be placed.
  public let memory: UnsafeMutableRawBufferPointer
  /// The address the first byte will run at.
  public let base: UInt32
  /// Bytes written so far.
  public private(set) var count = 0
  /// Each label's position once bound.
  private var labels: [Int?] = []
  /// Jumps to labels not bound yet: the label, where the displacement is, and its size.
  private var pending: [(label: Int, position: Int, short: Bool)] = []

  /// A new label, to bind later at the place it names.
  public mutating func label() -> CodeLabel {
    labels.append(nil)
    return CodeLabel(index: labels.count - 1)
  }

  /// Binds `label` here and patches the jumps already written to it.
  public mutating func bind(_ label: CodeLabel) {
    precondition(labels[label.index] == nil, "a label is bound once")
    labels[label.index] = count
    for jump in pending where jump.label == label.index { patch(jump.position, short: jump.short, to: count) }
    pending.removeAll { $0.label == label.index }
  }

  /// Writes a jump to `label` (unconditional when `condition` is nil): two bytes when
  /// `short` (the generator knows the distance fits in -128...127; a patch that does not
  /// fit traps, which the host tests would show), else five or six.
  public mutating func jump(_ condition: JumpCondition? = nil, to label: CodeLabel, short: Bool = false) {
    switch (condition, short) {
    case (nil, true): emit(0xEB)
    case (nil, false): emit(0xE9)
    case (let condition?, true): emit(0x70 | condition.rawValue)
    case (let condition?, false): emit(0x0F, 0x80 | condition.rawValue)
    }
    let position = count
    if short { emit(0) } else { emit32(0) }
    if let target = labels[label.index] {
      patch(position, short: short, to: target)
    } else {
      pending.append((label.index, position, short))
    }
  }

  /// Writes the displacement at `position` to reach byte `target` of this buffer.
  private mutating func patch(_ position: Int, short: Bool, to target: Int) {
    if short {
      let distance = target - (position + 1)
      precondition(distance >= -128 && distance <= 127, "a short jump's target is out of reach")
      memory[position] = UInt8(bitPattern: Int8(distance))
    } else {
      patchRelative(at: position, to: base &+ UInt32(truncatingIfNeeded: target))
    }
  }

  /// Whether every label jumped to has been bound (generators check before they finish).
  public var isComplete: Bool { pending.isEmpty }

  /// A buffer writing into `memory`, which will run at `base`.
  public init(memory: UnsafeMutableRawBufferPointer, base: UInt32) {
    self.memory = memory
    self.base = base
  }

  /// The run address of the next byte.
  public var address: UInt32 { base + UInt32(count) }

  /// Appends bytes; traps when the buffer is full (sizes are computed in advance).
  public mutating func emit(_ bytes: UInt8...) {
    for byte in bytes {
      precondition(count < memory.count, "code buffer too small")
      memory[count] = byte
      count += 1
    }
  }

  /// Fills with `int3` up to `count` bytes.
  public mutating func pad(to count: Int) {
    while self.count < count { emit(0xCC) }
  }

  /// Appends a little-endian 32-bit value.
  public mutating func emit32(_ value: UInt32) {
    emit(UInt8(value & 0xFF), UInt8((value >> 8) & 0xFF), UInt8((value >> 16) & 0xFF), UInt8(value >> 24))
  }

  /// Appends a 32-bit displacement to `target`, relative to the end of the field.
  public mutating func emitRelative(to target: UInt32) { emit32(target &- (address &+ 4)) }

  /// Rewrites the 32-bit displacement at `position` to reach `target`.
  private mutating func patchRelative(at position: Int, to target: UInt32) {
    let value = target &- (base &+ UInt32(position) &+ 4)
    memory.storeBytes(of: value.littleEndian, toByteOffset: position, as: UInt32.self)
  }
}
