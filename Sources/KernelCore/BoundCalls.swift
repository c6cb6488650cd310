// BoundCalls: the imports through which a server calls the methods of its required slots
// (`tessera_bound_call<words>_<slot>_<method>`), and the per-import stubs the kernel
// generates for them once the composition has bound the slot.
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
    guard name.count > prefixLength + 4,
      equals(UnsafeBufferPointer(rebasing: name[0..<prefixLength]), prefix)
    else { return nil }
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

extension CallStubs {
  /// Bytes at most of one bound-call stub (host tests check it).
  public static let boundStubSize = 128
  /// Where a bound stub's body starts: after `pushfd; cli`, the only bytes that stay the
  /// same when the kernel rewrites a stub (see `writeBoundRedirect`).
  public static let boundStubBody = 2

  /// What a bound stub has baked in.
  public struct BoundTarget: Equatable, Sendable {
    /// The call-chain value of the bound object (what the gate would write: the object's
    /// address with bit 0 set).
    public var chainValue: UInt32
    /// The object's context, which replaces the handle argument.
    public var context: UInt32
    /// The address of the method's word in the object's method vector (read at each call:
    /// a failed server's vector is switched to an entry that refuses).
    public var entry: UInt32

    /// A target.
    public init(chainValue: UInt32, context: UInt32, entry: UInt32) {
      self.chainValue = chainValue
      self.context = context
      self.entry = entry
    }
  }

  /// Writes a bound stub that only goes to `gate` (the stub of a slot not bound yet, or no
  /// longer): `pushfd; cli; popfd; jmp gate`. Written over a live stub from
  /// `boundStubBody` on (with interrupts disabled), it redirects it safely: a thread
  /// preempted on the first two bytes resumes into the redirect, and no thread can be
  /// preempted between the `cli` and the record being counted.
  public static func writeBoundRedirect(into code: inout CodeBuffer, gate: UInt32) {
    code.emit(0x9C)  // pushfd
    code.emit(0xFA)  // cli
    writeBoundRedirectBody(into: &code, gate: gate)
  }

  /// The part of `writeBoundRedirect` from `boundStubBody` on.
  public static func writeBoundRedirectBody(into code: inout CodeBuffer, gate: UInt32) {
    code.emit(0x9D)  // popfd
    code.emit(0xE9)
    code.emitRelative(to: gate)  // jmp gate                 (it checks the handle)
  }

  /// Writes the stub of one method of a bound slot: the gate's work with the entry's
  /// fields known. With interrupts off it pushes and counts the call-chain record naming
  /// the object (so the object and its server stay while the call runs); then it moves
  /// the caller's return address into the record, replaces the handle argument with the
  /// context, calls the method's entry through the object's method vector, pops the
  /// record and returns to the caller with status 0 (or what the entry returned, for
  /// entries that return to the caller themselves, as lock, marshaling and upcall stubs
  /// do). A full call chain returns `statusOutOfResources`.
  public static func writeBoundStub(into code: inout CodeBuffer, chain: CallChainLayout, target: BoundTarget)
  {
    code.emit(0x9C)  // pushfd
    code.emit(0xFA)  // cli
    code.emit(0x8B, 0x15)
    code.emit32(chain.depth)  // mov edx, [depth]
    code.emit(0x83, 0xFA, UInt8(chainCapacity))  // cmp edx, capacity
    code.emit(0x73)
    let toOverflow = code.count
    code.emit(0)  // jae overflow (short)
    code.emit(0xC7, 0x04, 0xD5)
    code.emit32(chain.records + 4)
    code.emit32(target.chainValue)  // mov dword [records+edx*8+4], object
    code.emit(0x42)  // inc edx
    code.emit(0x89, 0x15)
    code.emit32(chain.depth)  // mov [depth], edx         the record counts
    code.emit(0x9D)  // popfd
    code.emit(0x8F, 0x04, 0xD5)
    code.emit32(chain.records &- 8)  // pop [records+edx*8-8]    caller's return address
    code.emit(0xC7, 0x04, 0x24)
    code.emit32(target.context)  // mov dword [esp], context  handle -> context
    code.emit(0xFF, 0x15)
    code.emit32(target.entry)  // call [entry]
    code.emit(0x31, 0xD2)  // xor edx, edx             status: success
    popRecordAndReturn(&code, chain: chain)
    let overflow = code.count
    code.memory[toOverflow] = UInt8(truncatingIfNeeded: overflow - (toOverflow + 1))
    code.emit(0x9D)  // overflow: popfd
    returnFailure(&code, status: statusOutOfResources)
  }
}
