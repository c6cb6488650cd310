// SymbolMap: the text symbol map the kernel uses to name code addresses in backtraces.
//
// Contract: the format is one symbol per line, `AAAAAAAA SSSSSSSS name`, address and
// size in 8 hexadecimal digits, sorted by address (written by `tessera symbols`, with
// names demangled on the host). Lookups never read outside the map; malformed lines are
// skipped, so a damaged map gives fewer names, never a crash.

/// A symbol that contains an address.
public struct SymbolMatch {
  /// The symbol's name (demangled when the map was made).
  public var name: UnsafeBufferPointer<UInt8>
  /// The address's distance from the symbol's start.
  public var offset: UInt32
}

/// A read-only symbol map over bytes in memory.
public struct SymbolMap {
  private let bytes: UnsafeBufferPointer<UInt8>

  /// A map over `bytes`.
  public init(bytes: UnsafeRawBufferPointer) {
    self.bytes = bytes.bindMemory(to: UInt8.self)
  }

  /// Formats one line of a map (used by the host tool; the kernel only reads).
  public static func line(address: UInt32, size: UInt32, name: UnsafeBufferPointer<UInt8>)
    -> KernelMessage
  {
    var message = KernelMessage()
    appendHex(address, to: &message)
    message.append(byte: UInt8(ascii: " "))
    appendHex(size, to: &message)
    message.append(byte: UInt8(ascii: " "))
    message.append(text: name)
    return message
  }

  /// The symbol containing `address`: the last symbol at or below it, if `address` lies
  /// inside its size (or before the next symbol when its size is 0).
  public func lookup(_ address: UInt32) -> SymbolMatch? {
    var best: (start: UInt32, size: UInt32, name: UnsafeBufferPointer<UInt8>)?
    var nextStart = UInt32.max
    var lineStart = 0
    while lineStart < bytes.count {
      var lineEnd = lineStart
      while lineEnd < bytes.count && bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
      if lineEnd - lineStart > 18, let start = hex(at: lineStart), let size = hex(at: lineStart + 9),
        bytes[lineStart + 8] == UInt8(ascii: " "), bytes[lineStart + 17] == UInt8(ascii: " ")
      {
        if start <= address {
          if best == nil || start >= best!.start {
            best = (start, size, UnsafeBufferPointer(rebasing: bytes[(lineStart + 18)..<lineEnd]))
            nextStart = UInt32.max
          }
        } else if start < nextStart {
          nextStart = start
        }
      }
      lineStart = lineEnd + 1
    }
    guard let found = best else { return nil }
    let end = found.size > 0 ? found.start &+ found.size : nextStart
    guard address < end else { return nil }
    return SymbolMatch(name: found.name, offset: address - found.start)
  }

  private func hex(at offset: Int) -> UInt32? {
    var value: UInt32 = 0
    for index in offset..<(offset + 8) {
      let byte = bytes[index]
      let digit: UInt8
      switch byte {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
      case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
      default: return nil
      }
      value = value << 4 | UInt32(digit)
    }
    return value
  }

  private static func appendHex(_ value: UInt32, to message: inout KernelMessage) {
    for shift in stride(from: 28, through: 0, by: -4) {
      let nibble = UInt8((value >> UInt32(shift)) & 0xF)
      message.append(byte: nibble < 10 ? UInt8(ascii: "0") + nibble : UInt8(ascii: "a") + nibble - 10)
    }
  }
}
