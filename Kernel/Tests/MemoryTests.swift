// MemoryTests: in-kernel tests of the frame allocator, paging and the kernel heap.

import CPU
import KernelCore

func memoryTests() -> [KernelTest] {
  [
    KernelTest(name: "frames.allocate_and_free", body: framesAllocateAndFree),
    KernelTest(name: "frames.boot_memory_reserved", body: framesBootMemoryReserved),
    KernelTest(name: "paging.map_translate_unmap", body: pagingMapTranslateUnmap),
    KernelTest(name: "paging.null_page_unmapped", body: pagingNullPageUnmapped),
    KernelTest(name: "paging.device_window_uncached", body: pagingDeviceWindowUncached),
    KernelTest(name: "heap.stress", body: heapStress),
    KernelTest(name: "heap.alignment", body: heapAlignment),
    KernelTest(name: "heap.swift_objects", body: heapSwiftObjects),
    KernelTest(name: "heap.out_of_memory", body: heapOutOfMemory),
  ]
}

private func framesAllocateAndFree() {
  let before = PhysicalMemory.statistics
  var frames: InlineArray<100, UInt32> = .init(repeating: 0)
  for index in 0..<100 {
    guard let frame = PhysicalMemory.allocateFrame() else {
      check(false, "allocation \(index) failed with \(PhysicalMemory.statistics.freeFrames) frames free")
      return
    }
    check(frame % Paging.pageSize == 0, "frame \(hex: frame) is not page-aligned")
    check(frame >= 0x10_0000, "frame \(hex: frame) lies in the first MiB")
    check(!PhysicalMemory.isFree(frame), "frame \(hex: frame) still counts as free")
    for earlier in 0..<index where frames[earlier] == frame {
      check(false, "frame \(hex: frame) handed out twice")
    }
    frames[index] = frame
  }
  check(PhysicalMemory.statistics.freeFrames == before.freeFrames - 100, "free count did not drop by 100")
  for index in 0..<100 { PhysicalMemory.freeFrame(frames[index]) }
  check(PhysicalMemory.statistics == before, "statistics differ after freeing every frame")
}

private func framesBootMemoryReserved() {
  var address = arch_kernel_image_start()
  while address < arch_kernel_image_end() {
    check(!PhysicalMemory.isFree(address), "kernel image frame \(hex: address) is free")
    address += Paging.pageSize
  }
  var modules = 0
  for module in Boot.moduleTable! {
    modules += 1
    var page = module.start & ~(Paging.pageSize - 1)
    while page < module.end {
      check(!PhysicalMemory.isFree(page), "boot module frame \(hex: page) is free")
      page += Paging.pageSize
    }
  }
  check(modules >= 1, "the symbol map module is missing")
  check(!PhysicalMemory.isFree(0x9_F000), "memory below 1 MiB is free")
}

private func pagingMapTranslateUnmap() {
  let virtual: UInt32 = 0x5000_0000
  guard let frame = PhysicalMemory.allocateFrame() else { return check(false, "no frame") }
  check(Paging.translate(virtual) == nil, "test address is already mapped")
  check(Paging.map(virtual: virtual, physical: frame, flags: Paging.writable), "map failed")
  check(Paging.translate(virtual + 0x123) == frame + 0x123, "translate gives the wrong frame")
  let mapped = UnsafeMutablePointer<UInt32>(bitPattern: UInt(virtual))!
  let direct = UnsafeMutablePointer<UInt32>(bitPattern: UInt(frame))!
  mapped[5] = 0xC0FF_EE00
  check(direct[5] == 0xC0FF_EE00, "write through the mapping not visible in the direct map")
  check(Paging.unmap(virtual: virtual) == frame, "unmap returned the wrong frame")
  check(Paging.translate(virtual) == nil, "page still mapped after unmap")
  PhysicalMemory.freeFrame(frame)
}

private func pagingNullPageUnmapped() {
  check(Paging.translate(0) == nil, "page 0 is mapped")
  check(Paging.translate(0x1000) == 0x1000, "direct map does not start at 4 KiB")
  check(Paging.translate(0x10_0000) == 0x10_0000, "kernel image is not identity-mapped")
}

/// A small deterministic pseudo-random generator (xorshift32).
struct TestRandom {
  var state: UInt32
  mutating func next(below bound: UInt32) -> UInt32 {
    state ^= state << 13
    state ^= state >> 17
    state ^= state << 5
    return state % bound
  }
}

private func heapStress() {
  let heapBefore = KernelHeap.statistics
  let framesBefore = PhysicalMemory.statistics
  let slots = 512
  var pointers: InlineArray<512, UInt> = .init(repeating: 0)
  var sizes: InlineArray<512, UInt32> = .init(repeating: 0)
  var random = TestRandom(state: 0x1234_5678)
  var operations = 0
  for round in 0..<20_000 {
    let slot = Int(random.next(below: UInt32(slots)))
    if pointers[slot] != 0 {
      let pointer = UnsafeMutablePointer<UInt8>(bitPattern: pointers[slot])!
      let pattern = UInt8(truncatingIfNeeded: slot)
      let size = Int(sizes[slot])
      if pointer[0] != pattern || pointer[size - 1] != pattern {
        check(false, "allocation in slot \(slot) was overwritten (round \(round))")
      }
      KernelHeap.free(UnsafeMutableRawPointer(pointer))
      pointers[slot] = 0
    } else {
      // Mostly small objects, some page-sized, a few large.
      let kind = random.next(below: 100)
      let size =
        kind < 80
        ? 1 + random.next(below: 256)
        : (kind < 97 ? 1 + random.next(below: 8192) : 1 + random.next(below: 200_000))
      let alignment = 1 << (4 + Int(random.next(below: 4)))
      guard let pointer = KernelHeap.allocate(byteCount: Int(size), alignment: alignment) else {
        check(false, "allocation of \(size) bytes failed (round \(round))")
        continue
      }
      check(UInt(bitPattern: pointer) % UInt(alignment) == 0, "pointer not aligned to \(alignment)")
      pointer.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: slot), count: Int(size))
      pointers[slot] = UInt(bitPattern: pointer)
      sizes[slot] = size
    }
    operations += 1
    if round % 1000 == 0, let error = KernelHeap.validate() {
      check(false, "heap invalid at round \(round): \(error.message)")
      return
    }
  }
  for slot in 0..<slots where pointers[slot] != 0 {
    KernelHeap.free(UnsafeMutableRawPointer(bitPattern: pointers[slot])!)
  }
  let heapAfter = KernelHeap.statistics
  check(KernelHeap.validate() == nil, "heap invalid after freeing everything")
  check(
    heapAfter.liveAllocations == heapBefore.liveAllocations,
    "live allocations \(heapBefore.liveAllocations) -> \(heapAfter.liveAllocations)")
  check(
    heapAfter.bytesInUse == heapBefore.bytesInUse,
    "bytes in use \(heapBefore.bytesInUse) -> \(heapAfter.bytesInUse)")
  check(
    heapAfter.peakBytesInUse > heapBefore.bytesInUse + 1_000_000,
    "stress never used a MiB (peak \(heapAfter.peakBytesInUse))")
  // Every frame the heap still holds must be accounted for by its region size.
  let heapFrames = (heapAfter.regionBytes - heapBefore.regionBytes) / Int(Paging.pageSize)
  let framesAfter = PhysicalMemory.statistics
  check(
    framesAfter.freeFrames + heapFrames == framesBefore.freeFrames,
    "frames leaked: \(framesBefore.freeFrames) free before, \(framesAfter.freeFrames) after, heap holds \(heapFrames) more"
  )
  check(
    heapAfter.regionBytes <= heapBefore.regionBytes + 80 * 1024,
    "heap kept \(heapAfter.regionBytes - heapBefore.regionBytes) bytes after freeing everything")
  Log.info(
    "heap.stress: \(operations) operations, peak \(heapAfter.peakBytesInUse / 1024) KiB, region \(heapAfter.regionBytes / 1024) KiB after"
  )
}

private func heapAlignment() {
  var alignment = 16
  while alignment <= 4096 {
    var result: UnsafeMutableRawPointer? = nil
    let status = posixMemalign(&result, alignment, 100)
    check(status == 0 && result != nil, "posix_memalign(\(alignment)) failed with \(status)")
    if let result {
      check(
        UInt(bitPattern: result) % UInt(alignment) == 0,
        "pointer \(hex: UInt(bitPattern: result)) not aligned to \(alignment)")
      kernelFree(result)
    }
    alignment *= 2
  }
  var result: UnsafeMutableRawPointer? = nil
  check(posixMemalign(&result, 24, 100) == 22, "alignment 24 (not a power of two) was accepted")
}

private final class Node {
  var value: Int
  var next: Node?
  init(value: Int, next: Node?) {
    self.value = value
    self.next = next
  }
}

private func heapSwiftObjects() {
  let before = KernelHeap.statistics
  do {
    var list: Node? = nil
    for value in 0..<1000 { list = Node(value: value, next: list) }
    var numbers: [Int] = []
    for value in 0..<5000 { numbers.append(value * 2) }
    var sum = 0
    var node = list
    while let current = node {
      sum += current.value
      node = current.next
    }
    check(sum == 499_500, "list sum \(sum)")
    check(numbers.count == 5000 && numbers[4999] == 9998, "array contents wrong")
    check(KernelHeap.statistics.liveAllocations > before.liveAllocations + 1000, "objects not on the heap")
    // Unlink iteratively: releasing a 1000-long chain recursively would use much stack.
    while let current = list {
      list = current.next
      current.next = nil
    }
  }
  let after = KernelHeap.statistics
  check(
    after.liveAllocations == before.liveAllocations,
    "live allocations \(before.liveAllocations) -> \(after.liveAllocations) after releasing every object")
}

private func heapOutOfMemory() {
  let framesBefore = PhysicalMemory.statistics
  let heapBefore = KernelHeap.statistics
  let chunk = 1_048_576
  var chunks: InlineArray<1024, UInt> = .init(repeating: 0)
  var count = 0
  while count < 1024, let pointer = KernelHeap.allocate(byteCount: chunk, alignment: 16) {
    chunks[count] = UInt(bitPattern: pointer)
    count += 1
  }
  check(count < 1024, "allocated a GiB on a machine with 128 MiB")
  let expected = framesBefore.freeFrames * Int(Paging.pageSize) / chunk
  check(count >= expected - 2, "only \(count) MiB allocated of about \(expected) MiB free")
  check(
    KernelHeap.statistics.failedAllocations == heapBefore.failedAllocations + 1, "the failure was not counted"
  )
  // The kernel keeps working while memory is exhausted: small requests still succeed
  // from the remaining slack, and freeing gives everything back.
  for index in 0..<count { KernelHeap.free(UnsafeMutableRawPointer(bitPattern: chunks[index])!) }
  let heapAfter = KernelHeap.statistics
  check(heapAfter.bytesInUse == heapBefore.bytesInUse, "bytes in use changed")
  let framesAfter = PhysicalMemory.statistics
  let heapFrames = (heapAfter.regionBytes - heapBefore.regionBytes) / Int(Paging.pageSize)
  check(
    framesAfter.freeFrames + heapFrames == framesBefore.freeFrames,
    "frames not returned: \(framesBefore.freeFrames) -> \(framesAfter.freeFrames)")
  Log.info("heap.out_of_memory: \(count) MiB allocated before exhaustion, all returned")
}

/// Device registers mapped for kernel-mode drivers land in the device window, uncached and
/// write-through, in a run of their own; unmapping frees the run for the next.
private func pagingDeviceWindowUncached() {
  let device: UInt32 = 0xFEBD_1000  // where QEMU's PC puts the RTL8139's registers (never RAM here)
  guard let first = DeviceWindow.map(base: device, pages: 2, writable: true),
    let second = DeviceWindow.map(base: device, pages: 1, writable: false)
  else { return check(false, "the device window refused a mapping") }
  check(
    first >= Paging.deviceWindowStart && first < Paging.deviceWindowEnd, "outside the window: \(hex: first)")
  check(second >= first + 2 * Paging.pageSize || second + Paging.pageSize <= first, "runs overlap")
  let entry = Paging.entryValue(first + Paging.pageSize, in: Paging.directory)
  check(entry & 0xFFFF_F000 == device + Paging.pageSize, "wrong frame: \(hex: entry)")
  check(
    entry & (Paging.cacheDisable | Paging.writeThrough | Paging.writable | Paging.user)
      == Paging.cacheDisable | Paging.writeThrough | Paging.writable, "flags \(hex: entry)")
  check(Paging.entryValue(second, in: Paging.directory) & Paging.writable == 0, "read-only mapping writable")
  DeviceWindow.unmap(start: first, pages: 2)
  DeviceWindow.unmap(start: second, pages: 1)
  check(Paging.translate(first) == nil && Paging.translate(second) == nil, "still mapped after unmap")
  guard let again = DeviceWindow.map(base: device, pages: 3, writable: false) else {
    return check(false, "the freed runs were not given again")
  }
  DeviceWindow.unmap(start: again, pages: 3)
}
