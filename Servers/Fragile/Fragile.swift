// Fragile: does, on request, what a server loaded in user mode must not be able to do.
//
// Contract: `misbehave(kind, address)` with
//   1 write through a wild pointer            2 divide by zero
//   3 a Swift trap (arithmetic overflow)      4 loop forever (the watchdog's case)
//   5 read kernel memory at `address`         6 read `address` (another space's secret)
//   7 call a forged handle                    8 pass a block in kernel memory
//   9 pass a block in unmapped memory        10 pass an oversized block
//  11 pass a block straddling mapped and unmapped pages
//  12 write to the read-only thunk page      13 jump into kernel code at `address`
//  14 an I/O instruction (`in al, 0x80`)     15 a privileged instruction (`cli`)
//  16 tessera_call0 made on a stack of its own instead of the thread's
//  17 tessera_acquire made on a stack of its own instead of the thread's
//  18 tessera_call8 with two arguments pushed at the very top of the thread's stack, so
//     the eight words it reads lie past the stack's end (on the next slot's guard page)
//  19 loop forever making null kernel calls (the watchdog's case too)
// Kinds 6-11 and 16-18 return what happened (the word read, or the refused call's status: 1
// invalid handle, 3 block too large, 4 bad block); the others fault.

import KernelCore
import ServerRuntime
import TesseraABI

/// Kept opaque so the optimizer cannot fold the faults away (the time-stamp counter is
/// never 0, but the compiler cannot know).
@inline(never)
func opaque(_ value: UInt) -> UInt { tessera_timestamp() == 0 ? 0 : value }

/// The status a call failed with, or 0.
func status(_ body: () throws(CallError) -> Void) -> UInt {
  do throws(CallError) {
    try body()
    return 0
  } catch {
    return UInt(error.status)
  }
}

final class Misbehaving: FragileImplementation {
  func compute(a: UInt, b: UInt, c: UInt) -> UInt { a &+ b &+ c }

  func misbehave(kind: UInt, address: UInt) -> UInt {
    switch kind {
    case 1:
      UnsafeMutablePointer<UInt>(bitPattern: opaque(0xDEAD_0000))!.pointee = kind
    case 2:
      return opaque(100) / opaque(0)
    case 3:
      return opaque(UInt.max) + opaque(1)
    case 4:
      while tessera_timestamp() != 0 {}  // rdtsc: an instruction the optimizer must keep
    case 19:
      while tessera_null_call() == 0 {}
    case 5, 6:
      return UnsafePointer<UInt>(bitPattern: opaque(address))!.pointee
    case 7:
      let forged = Console(handle: UInt32(opaque(200)))
      return [UInt8](repeating: 66, count: 4).withUnsafeBytes { bytes in
        status { () throws(CallError) in try forged.write(text: bytes) }
      }
    case 8, 9, 11:
      let start = kind == 8 ? opaque(0x0010_0000) : (kind == 9 ? opaque(0x7000_0000) : opaque(0x4000_0FF0))
      return status { () throws(CallError) in
        try Required.console.write(
          text: UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: start), count: 32))
      }
    case 10:
      let big = [UInt8](repeating: 65, count: 2000)
      return big.withUnsafeBytes { bytes in
        status { () throws(CallError) in try Required.console.write(text: bytes) }
      }
    case 12:
      UnsafeMutablePointer<UInt>(bitPattern: opaque(0x4000_0000))!.pointee = kind
    case 14, 15:
      // The instruction and a `ret`, run from the heap (without PAE, readable is executable).
      let code: [UInt8] = kind == 14 ? [0xE4, 0x80, 0xC3] : [0xFA, 0xC3]
      code.withUnsafeBytes { bytes in
        unsafeBitCast(bytes.baseAddress!, to: (@convention(c) () -> Void).self)()
      }
    case 16, 17:
      let stack = UnsafeMutableRawPointer.allocate(byteCount: 512, alignment: 16)
      defer { stack.deallocate() }
      let function =
        kind == 16
        ? functionAddress(tessera_call0 as @convention(c) (UInt32, UInt32) -> UInt64)
        : functionAddress(tessera_acquire as @convention(c) (UInt32) -> UInt32)
      return callOnStack(function, top: UInt32(UInt(bitPattern: stack)) + 512)
    case 18:
      // The top of this thread's 64 KiB stack slot, from the address of a local.
      var local: UInt32 = 0
      let top = withUnsafeMutablePointer(to: &local) { (UInt32(UInt(bitPattern: $0)) & ~0xFFFF) &+ 0x1_0000 }
      typealias Call8 =
        @convention(c) (
          UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32
        ) -> UInt64
      return callOnStack(functionAddress(tessera_call8 as Call8), top: top)
    case 13:
      let function = unsafeBitCast(
        UnsafeRawPointer(bitPattern: opaque(address))!, to: (@convention(c) () -> Void).self)
      function()
    default:
      break
    }
    return 0
  }
}

/// The address a C function pointer points to.
func functionAddress<Function>(_ function: Function) -> UInt32 {
  UInt32(UInt(bitPattern: unsafeBitCast(function, to: UnsafeRawPointer.self)))
}

/// Calls `function(1, 0)` (a kernel ABI function) with the stack pointer moved to `top`,
/// and returns the status the call came back with (EDX).
func callOnStack(_ function: UInt32, top: UInt32) -> UInt {
  func bytes(_ value: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) } }
  var code: [UInt8] = [0x55, 0x89, 0xE5, 0xBC]  // push ebp; mov ebp, esp; mov esp, top
  code += bytes(top)
  code += [0x6A, 0x00, 0x6A, 0x01, 0xB8]  // push 0; push 1; mov eax, function
  code += bytes(function)
  // call eax; mov eax, edx (the status); mov esp, ebp; pop ebp; ret
  code += [0xFF, 0xD0, 0x89, 0xD0, 0x89, 0xEC, 0x5D, 0xC3]
  return code.withUnsafeBytes { buffer in
    UInt(unsafeBitCast(buffer.baseAddress!, to: (@convention(c) () -> UInt32).self)())
  }
}

func start() -> Fragile {
  Fragile.export(Misbehaving())!
}
