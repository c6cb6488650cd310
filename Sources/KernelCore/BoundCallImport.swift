// BoundCallImport: the imports through which a server calls the methods of its required
// slots (`tessera_bound_call<words>_<slot>_<method>`) and counts their references
// (`tessera_bound_acquire_<slot>`, `tessera_bound_release_<slot>`): the names' rules. The
// stubs the kernel generates for them are I686CodeGeneration's BoundStubs.
//
// Contract: a generated proxy calls the bound import for a handle that is one of its
// server's required slots of the proxy's interface, and `tessera_call<words>` for every
// other handle; both take the same arguments (handle, selector, words). The kernel
// resolves each bound import to a stub of its own. Until the slot is bound, and again
// once the entry of its handle is freed, the stub only jumps to the table's gate (the
// general path, which checks everything). While the slot is bound the stub calls the
// method's entry in the bound object's method vector directly: the handle, the interface
// and the method were checked when the file was loaded and the slot bound, so only the
// call-chain record remains to be done. `parse` and `check` decide whether a name is a
// valid bound import of a file (a name that is not is refused like any unknown import).

/// One bound-call import: method `method` (0-based) of the interface of required slot
/// `slot` (1-based: the slot's handle), called with `words` call words.
public struct BoundCallImport: Equatable, Sendable {
  /// Call words after the handle and the selector (0...8).
  public var words: Int
  /// The slot's handle (1...255).
  public var slot: Int
  /// The method's index in the slot's interface (0...255).
  public var method: Int

  /// An import.
  public init(words: Int, slot: Int, method: Int) {
    self.words = words
    self.slot = slot
    self.method = method
  }

  private static let prefix: StaticString = "tessera_bound_call"

  /// The import named `name`, if it has the form `tessera_bound_call<W>_<S>_<M>` with W a
  /// single digit 0...8 and S, M decimal numbers of at most three digits without leading
  /// zeros, S at least 1 and both at most 255. Anything else: nil.
  public static func parse(_ name: UnsafeBufferPointer<UInt8>) -> BoundCallImport? {
    let prefixLength = prefix.utf8CodeUnitCount
    guard name.count > prefixLength + 4, hasPrefix(name) else { return nil }
    var position = prefixLength
    let wordsDigit = name[position]
    guard wordsDigit >= UInt8(ascii: "0"), wordsDigit <= UInt8(ascii: "8") else { return nil }
    position += 1
    func number() -> Int? {
      guard position < name.count, name[position] == UInt8(ascii: "_") else { return nil }
      position += 1
      var value = 0
      var digits = 0
      while position < name.count, name[position] >= UInt8(ascii: "0"), name[position] <= UInt8(ascii: "9") {
        if digits == 1 && value == 0 { return nil }  // a leading zero
        value = value * 10 + Int(name[position] - UInt8(ascii: "0"))
        digits += 1
        position += 1
        guard digits <= 3 else { return nil }
      }
      return digits > 0 && value <= 255 ? value : nil
    }
    guard let slot = number(), slot >= 1, let method = number(), position == name.count else { return nil }
    return BoundCallImport(words: Int(wordsDigit - UInt8(ascii: "0")), slot: slot, method: method)
  }

  /// Whether `name` starts like a bound-call import (then it must be a valid one).
  public static func hasPrefix(_ name: UnsafeBufferPointer<UInt8>) -> Bool {
    let length = prefix.utf8CodeUnitCount
    return name.count >= length && equals(UnsafeBufferPointer(rebasing: name[0..<length]), prefix)
  }

  /// Whether this import suits `manifest` (`problem(in:)` is nil).
  public func fits(_ manifest: ServerManifest) -> Bool {
    guard slot <= manifest.slotCount else { return false }
    let interface = manifest.interface(manifest.slot(slot - 1).interface)
    return method < interface.methodCount && interface.method(method).callWords == words
  }

  /// Why this import does not suit `manifest` (no such slot, no such method in the slot's
  /// interface, or another number of call words than the method has); nil if it does.
  public func problem(in manifest: ServerManifest) -> KernelMessage? {
    guard slot <= manifest.slotCount else {
      return "calls slot \(slot), and the server has \(manifest.slotCount) slots"
    }
    let interface = manifest.interface(manifest.slot(slot - 1).interface)
    guard method < interface.methodCount else {
      return
        "calls method \(method) of slot \(slot), whose interface \(text: interface.name) has \(interface.methodCount)"
    }
    let expected = interface.method(method).callWords
    guard expected == words else {
      return "calls method \(method) of slot \(slot) with \(words) words; it takes \(expected)"
    }
    return nil
  }
}

/// Any bound import: a call (above), or the count of a required slot's reference taken or
/// dropped (`tessera_bound_acquire_<slot>`, `tessera_bound_release_<slot>`: arguments and
/// results as `tessera_acquire` and `tessera_release`, the handle included). The kernel
/// gives each a stub specialized for the slot's entry.
public enum BoundImport: Equatable, Sendable {
  /// `tessera_bound_callW_SLOT_METHOD`.
  case call(BoundCallImport)
  /// `tessera_bound_acquire_SLOT`.
  case acquire(slot: Int)
  /// `tessera_bound_release_SLOT`.
  case release(slot: Int)

  private static let prefix: StaticString = "tessera_bound_"
  private static let acquirePrefix: StaticString = "tessera_bound_acquire_"
  private static let releasePrefix: StaticString = "tessera_bound_release_"

  /// Whether `name` starts like a bound import (then it must be a valid one).
  public static func hasPrefix(_ name: UnsafeBufferPointer<UInt8>) -> Bool { starts(name, with: prefix) }

  private static func starts(_ name: UnsafeBufferPointer<UInt8>, with start: StaticString) -> Bool {
    let length = start.utf8CodeUnitCount
    return name.count >= length && equals(UnsafeBufferPointer(rebasing: name[0..<length]), start)
  }

  /// The bound import named `name`; nil if it is none (for the slot number: decimal, 1 to
  /// 255, no leading zero).
  public static func parse(_ name: UnsafeBufferPointer<UInt8>) -> BoundImport? {
    if BoundCallImport.hasPrefix(name) { return BoundCallImport.parse(name).map { .call($0) } }
    for (start, isAcquire) in [(acquirePrefix, true), (releasePrefix, false)] where starts(name, with: start)
    {
      let digits = UnsafeBufferPointer(rebasing: name[start.utf8CodeUnitCount...])
      guard (1...3).contains(digits.count), digits[0] != UInt8(ascii: "0") else { return nil }
      var slot = 0
      for digit in digits {
        guard digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") else { return nil }
        slot = slot * 10 + Int(digit - UInt8(ascii: "0"))
      }
      guard slot <= 255 else { return nil }
      return isAcquire ? .acquire(slot: slot) : .release(slot: slot)
    }
    return nil
  }

  /// Whether this import suits `manifest` (`problem(in:)` is nil).
  public func fits(_ manifest: ServerManifest) -> Bool {
    switch self {
    case .call(let call): call.fits(manifest)
    case .acquire(let slot), .release(let slot): slot <= manifest.slotCount
    }
  }

  /// Why this import does not suit `manifest`; nil if it does.
  public func problem(in manifest: ServerManifest) -> KernelMessage? {
    switch self {
    case .call(let call): return call.problem(in: manifest)
    case .acquire(let slot), .release(let slot):
      guard slot <= manifest.slotCount else {
        return "names slot \(slot), and the server has \(manifest.slotCount) slots"
      }
      return nil
    }
  }
}
