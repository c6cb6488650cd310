// PagingTest: touches pager regions and memory objects and reports what the pagers did,
// so the system test can check that pages are allocated only when touched and copied
// only when written. Must run in user mode (pager regions are user mode only).

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

/// The word at `address` (read through a pointer: each read may fault a page in).
@inline(never)
func load(_ address: UInt) -> UInt32 { UnsafePointer<UInt32>(bitPattern: address)!.pointee }

@inline(never)
func store(_ address: UInt, _ value: UInt32) {
  UnsafeMutablePointer<UInt32>(bitPattern: address)!.pointee = value
}

final class Test: ProgramImplementation {
  let memory = Required.memory
  var failures = 0

  func check(_ condition: Bool, _ what: KernelMessage) {
    if !condition {
      failures += 1
      say("@@PAGING FAIL \(what)")
    }
  }

  func run() -> UInt {
    do throws(CallError) {
      try zeroFill()
      try copyOnWrite()
      try sharedAndDeviceMemory()
    } catch {
      say("@@PAGING FAIL a call failed with status \(error.status)")
      failures += 1
    }
    say("@@PAGING done failures=\(failures)")
    return UInt(failures)
  }

  /// 64 pages mapped; three touched (two read, one of them written, one only written).
  func zeroFill() throws(CallError) {
    let zero = Required.zero
    let pager = try zero.pager()
    let base = try memory.mapPager(pager: pager, bytes: 64 * 4096)
    pager.release()
    check(base != 0, "mapPager failed")
    let before = try zero.allocations()
    let first = load(base)
    let tenth = load(base + 10 * 4096)
    let afterReads = try zero.allocations()
    store(base + 10 * 4096 + 8, 0xABCD)
    store(base + 20 * 4096, 0x1234)
    let afterWrites = try zero.allocations()
    let back = load(base + 10 * 4096 + 8) == 0xABCD && load(base + 20 * 4096) == 0x1234
    say(
      "@@PAGING zero mapped=64 before=\(before) after-2-reads=\(afterReads) after-2-writes=\(afterWrites) zeroes=\(first == 0 && tenth == 0) written-back=\(back)"
    )
    check(before == 0 && afterReads == 2 && afterWrites == 3 && first == 0 && tenth == 0 && back, "zero fill")
    check(try memory.unmap(address: base) == 1, "unmap of the zero region")
  }

  /// 8 template pages: all read, two written.
  func copyOnWrite() throws(CallError) {
    let cow = Required.cow
    let pager = try cow.pager()
    let base = try memory.mapPager(pager: pager, bytes: 8 * 4096)
    pager.release()
    var template = true
    for page in 0..<8 {
      template = template && load(base + UInt(page) * 4096 + 100) == 0xC0DE_0000 + UInt32(page)
    }
    let afterReads = try cow.copies()
    store(base + 2 * 4096 + 4, 0x2222)
    store(base + 6 * 4096 + 4, 0x6666)
    store(base + 6 * 4096 + 8, 0x6667)  // the same page again: no second copy
    let afterWrites = try cow.copies()
    let own = load(base + 2 * 4096 + 4) == 0x2222 && load(base + 6 * 4096 + 8) == 0x6667
    let rest = load(base + 2 * 4096 + 100) == 0xC0DE_0002 && load(base + 3 * 4096 + 4) == 0xC0DE_0003
    say(
      "@@PAGING cow pages=8 template-read=\(template) copies-after-reads=\(afterReads) copies-after-writes=\(afterWrites) writes-kept=\(own) rest-unchanged=\(rest)"
    )
    check(template && afterReads == 0 && afterWrites == 2 && own && rest, "copy-on-write")
    check(try memory.unmap(address: base) == 1, "unmap of the copy-on-write region")
  }

  /// One object mapped twice shows the same bytes; its physical address is known; its
  /// pages come back when the last reference and mapping are gone.
  func sharedAndDeviceMemory() throws(CallError) {
    let freeBefore = try memory.freePages()
    guard let shared = try memory.allocate(bytes: 3 * 4096) else {
      check(false, "allocate")
      return
    }
    let freeWhileHeld = try memory.freePages()
    let size = try shared.size()
    let physical = try shared.physicalAddress()
    let writable = try memory.map(memory: shared, writable: 1)
    let readOnly = try memory.map(memory: shared, writable: 0)
    store(writable + 4096 + 12, 0x5EED)
    let seen = load(readOnly + 4096 + 12)
    shared.release()  // the mappings keep it alive
    let stillThere = load(readOnly + 4096 + 12) == 0x5EED
    let unmappedWritable = try memory.unmap(address: writable)
    let unmappedReadOnly = try memory.unmap(address: readOnly)
    check(unmappedWritable == 1 && unmappedReadOnly == 1, "unmap")
    let freeAfter = try memory.freePages()
    check(try memory.unmap(address: readOnly) == 0, "a second unmap must fail")
    say(
      "@@PAGING shared size=\(size) physical-aligned=\(physical != 0 && physical % 4096 == 0) seen-through-second-mapping=\(seen == 0x5EED) alive-while-mapped=\(stillThere) pages-taken=\(freeBefore - freeWhileHeld) pages-returned=\(freeAfter - freeWhileHeld)"
    )
    check(
      size == 3 * 4096 && seen == 0x5EED && stillThere && freeBefore - freeWhileHeld == 3, "shared memory")
    check(freeAfter == freeBefore, "the pages were not returned")
  }
}

func start() -> Program {
  Program.export(Test())!
}
