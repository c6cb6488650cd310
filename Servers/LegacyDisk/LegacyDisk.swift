// LegacyDisk: a one-block device on the old BlockDevice interface (see LegacyDisk.server).

import ServerRuntime

final class LegacyDisk: BlockDeviceImplementation {
  func blockSize() -> UInt { 512 }
  func readBlock(index: UInt, data: UnsafeMutableRawBufferPointer) -> Int { 0 }
  func writeBlock(index: UInt, data: UnsafeRawBufferPointer) -> UInt { 0 }
}

func start() -> BlockDevice {
  BlockDevice.export(LegacyDisk())!
}
