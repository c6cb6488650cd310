// CallStubs: the i686 machine code the kernel generates at load time for calls between
// servers in kernel mode (the paper's "custom code for each server function", section 4).
//
// Contract: every function writes position-dependent code for the address it will run
// at (`CodeBuffer.base`), with the addresses of the kernel data it uses baked in. The
// layouts below are shared with the kernel's Swift code (ReferenceTable, CallChain).
//
// The gate (one per server, the target of its tessera_callN imports) checks the handle
// against the server's table and the selector against the entry's interface, replaces the
// handle argument with the callee object's context, and jumps to the method's stub. A
// method stub records the call in the call chain (moving the caller's return address
// there, so the arguments stay where the caller pushed them), takes the callee's lock if
// it is not thread-safe, calls the dispatch function, and returns through the record.

/// Bytes of machine code being written for a known run address.
public struct CodeBuffer {
  /// Where the code will be placed.
  public let memory: UnsafeMutableRawBufferPointer
  /// The address the first byte will run at.
  public let base: UInt32
  /// Bytes written so far.
  public private(set) var count = 0

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

  /// Appends a little-endian 32-bit value.
  public mutating func emit32(_ value: UInt32) {
    emit(UInt8(value & 0xFF), UInt8((value >> 8) & 0xFF), UInt8((value >> 16) & 0xFF), UInt8(value >> 24))
  }

  /// Appends a 32-bit displacement to `target`, relative to the end of the field.
  public mutating func emitRelative(to target: UInt32) { emit32(target &- (address &+ 4)) }

  /// Rewrites the 32-bit displacement at `position` to reach `target`.
  public mutating func patchRelative(at position: Int, to target: UInt32) {
    let value = target &- (base &+ UInt32(position) &+ 4)
    memory.storeBytes(of: value.littleEndian, toByteOffset: position, as: UInt32.self)
  }
}

/// Addresses of the call chain (see the kernel's CallChain) baked into method stubs.
public struct CallChainLayout {
  /// Address of the depth word.
  public var depth: UInt32
  /// Address of the records: 8 bytes each, return address then server.
  public var records: UInt32
  /// Address of the lock flags: one word per record, 1 if that call took the lock.
  public var lockFlags: UInt32

  /// A layout.
  public init(depth: UInt32, records: UInt32, lockFlags: UInt32) {
    self.depth = depth
    self.records = records
    self.lockFlags = lockFlags
  }
}

public enum CallStubs {
  /// Bytes of one reference-table entry.
  public static let entrySize: UInt32 = 32
  /// Offsets inside an entry.
  public static let entryContext: UInt8 = 0
  public static let entryStubs: UInt8 = 4
  public static let entryDigest: UInt8 = 8
  public static let entryMethodCount: UInt8 = 12
  /// Calls that may be nested in one call chain.
  public static let chainCapacity: UInt32 = 64
  /// Status words returned in EDX.
  public static let statusInvalidHandle: UInt32 = 1
  public static let statusWrongInterface: UInt32 = 2
  public static let statusOutOfResources: UInt32 = 6
  /// Upper bounds of the sizes, for allocating code memory.
  public static let gateSize = 80
  public static let methodStubSize = 128

  /// Writes a server's gate. `tableBase` and `tableCapacity` are the addresses of the
  /// words holding its reference table's address and number of entries.
  public static func writeGate(into code: inout CodeBuffer, tableBase: UInt32, tableCapacity: UInt32) {
    code.emit(0x8B, 0x44, 0x24, 0x04)  // mov eax, [esp+4]        handle
    code.emit(0x3B, 0x05)
    code.emit32(tableCapacity)  // cmp eax, [capacity]
    code.emit(0x0F, 0x83)
    let toInvalid = code.count
    code.emit32(0)  // jae invalid
    code.emit(0xC1, 0xE0, 0x05)  // shl eax, 5               entry offset
    code.emit(0x03, 0x05)
    code.emit32(tableBase)  // add eax, [base]
    code.emit(0x8B, 0x4C, 0x24, 0x08)  // mov ecx, [esp+8]        selector
    code.emit(0x2B, 0x48, entryDigest)  // sub ecx, [eax+digest]    method index
    code.emit(0x3B, 0x48, entryMethodCount)  // cmp ecx, [eax+count]
    code.emit(0x0F, 0x83)
    let toWrong = code.count
    code.emit32(0)  // jae wrong
    code.emit(0x8B, 0x50, entryContext)  // mov edx, [eax+context]
    code.emit(0x89, 0x54, 0x24, 0x04)  // mov [esp+4], edx         handle -> context
    code.emit(0x8B, 0x40, entryStubs)  // mov eax, [eax+stubs]
    code.emit(0xFF, 0x24, 0x88)  // jmp [eax+ecx*4]
    // wrong: a free entry has no methods, so it is an invalid handle, not a wrong interface.
    code.patchRelative(at: toWrong, to: code.address)
    code.emit(0x83, 0x78, entryMethodCount, 0x00)  // cmp dword [eax+count], 0
    code.emit(0x74, 0x08)  // je invalid (+8)
    code.emit(0x31, 0xC0)  // xor eax, eax
    code.emit(0xBA)
    code.emit32(statusWrongInterface)  // mov edx, 2
    code.emit(0xC3)  // ret
    code.patchRelative(at: toInvalid, to: code.address)
    code.emit(0x31, 0xC0)  // invalid: xor eax, eax
    code.emit(0xBA)
    code.emit32(statusInvalidHandle)  // mov edx, 1
    code.emit(0xC3)  // ret
  }

  /// Writes the stub of one method of one server. `lock` is the address of the server's
  /// lock word, or nil for a thread-safe server; `server` identifies the callee in the
  /// call chain; `dispatch` is the callee's dispatch function.
  public static func writeMethodStub(
    into code: inout CodeBuffer, chain: CallChainLayout, server: UInt32, dispatch: UInt32, lock: UInt32?
  ) {
    code.emit(0xA1)
    code.emit32(chain.depth)  // mov eax, [depth]
    code.emit(0x83, 0xF8, UInt8(chainCapacity))  // cmp eax, capacity
    code.emit(0x0F, 0x83)
    let toOverflow = code.count
    code.emit32(0)  // jae overflow
    code.emit(0x5A)  // pop edx                 caller's return address
    code.emit(0x89, 0x14, 0xC5)
    code.emit32(chain.records)  // mov [records+eax*8], edx
    code.emit(0xC7, 0x04, 0xC5)
    code.emit32(chain.records + 4)
    code.emit32(server)  // mov dword [records+eax*8+4], server
    if let lock {
      code.emit(0x31, 0xD2)  // xor edx, edx
      code.emit(0x83, 0x3D)
      code.emit32(lock)
      code.emit(0x00)  // cmp dword [lock], 0
      code.emit(0x75, 0x0B)  // jne held (+11): re-entry by this thread
      code.emit(0xC7, 0x05)
      code.emit32(lock)
      code.emit32(1)  // mov dword [lock], 1
      code.emit(0x42)  // inc edx
      code.emit(0x89, 0x14, 0x85)
      code.emit32(chain.lockFlags)  // held: mov [flags+eax*4], edx
    }
    code.emit(0x40)  // inc eax
    code.emit(0xA3)
    code.emit32(chain.depth)  // mov [depth], eax
    code.emit(0xE8)
    code.emitRelative(to: dispatch)  // call dispatch
    code.emit(0x8B, 0x0D)
    code.emit32(chain.depth)  // mov ecx, [depth]
    code.emit(0x49)  // dec ecx
    code.emit(0x89, 0x0D)
    code.emit32(chain.depth)  // mov [depth], ecx
    if let lock {
      code.emit(0x83, 0x3C, 0x8D)
      code.emit32(chain.lockFlags)
      code.emit(0x00)  // cmp dword [flags+ecx*4], 0
      code.emit(0x74, 0x0A)  // je done (+10)
      code.emit(0xC7, 0x05)
      code.emit32(lock)
      code.emit32(0)  // mov dword [lock], 0
    }
    code.emit(0xFF, 0x24, 0xCD)
    code.emit32(chain.records)  // done: jmp [records+ecx*8]
    code.patchRelative(at: toOverflow, to: code.address)
    code.emit(0x31, 0xC0)  // overflow: xor eax, eax
    code.emit(0xBA)
    code.emit32(statusOutOfResources)  // mov edx, 6
    code.emit(0xC3)  // ret
  }

  /// Writes a stub for a method that needs marshaling (references or blocks): it loads
  /// `information` into EAX and jumps to the kernel's marshaling entry.
  public static func writeMarshalStub(into code: inout CodeBuffer, information: UInt32, entry: UInt32) {
    code.emit(0xB8)
    code.emit32(information)  // mov eax, information
    code.emit(0xE9)
    code.emitRelative(to: entry)  // jmp entry
  }
}
