// RamDisk: a BlockDevice over 128 KiB of the server's own heap.

import ServerRuntime

final class RamDisk: BlockDeviceImplementation {
  static let size = 512
  static let count = 256
  private let storage: UnsafeMutableRawBufferPointer

  init() {
    storage = .allocate(byteCount: Self.size * Self.count, alignment: 16)
    storage.initializeMemory(as: UInt8.self, repeating: 0)
  }

  deinit { storage.deallocate() }

  func blockSize() -> UInt { UInt(Self.size) }

  func blockCount() -> UInt { UInt(Self.count) }

  func readBlock(index: UInt, data: UnsafeMutableRawBufferPointer) -> Int {
    guard index < Self.count else { return 0 }
    let length = min(data.count, Self.size)
    let offset = Int(index) * Self.size
    data.copyMemory(from: UnsafeRawBufferPointer(rebasing: storage[offset..<(offset + length)]))
    return length
  }

  func writeBlock(index: UInt, data: UnsafeRawBufferPointer) -> UInt {
    guard index < Self.count, data.count <= Self.size else { return 0 }
    let offset = Int(index) * Self.size
    UnsafeMutableRawBufferPointer(rebasing: storage[offset..<(offset + data.count)]).copyMemory(from: data)
    return 1
  }
}

func start() -> BlockDevice {
  BlockDevice.export(RamDisk())!
}
