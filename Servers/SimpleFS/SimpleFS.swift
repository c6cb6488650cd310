// SimpleFS: the paper's file-system example (Figures 1 and 2) as a server. Directories
// and files are local objects handed out as references; their data is reached through
// local pointers. File contents live in blocks of the `device` the server was loaded with.

import ServerRuntime

/// A directory or file of the tree.
final class Node {
  let name: [UInt8]
  let isDirectory: Bool
  var children: [Node] = []
  var blocks: [UInt] = []
  var size = 0

  init(name: [UInt8], isDirectory: Bool) {
    self.name = name
    self.isDirectory = isDirectory
  }

  func child(named name: UnsafeRawBufferPointer, directory: Bool) -> Node? {
    children.first { $0.isDirectory == directory && $0.name.elementsEqual(name) }
  }
}

/// The mounted volume: the device and its free blocks.
final class Volume {
  let device = Required.device
  let blockSize: Int
  var freeBlocks: [UInt] = []

  init() {
    blockSize = Int((try? device.blockSize()) ?? 0)
    let count = (try? device.blockCount()) ?? 0
    var index = count
    while index > 0 {
      index -= 1
      freeBlocks.append(index)
    }
  }
}

nonisolated(unsafe) var volume: Volume?

/// Copies `name` into `buffer`; returns the bytes copied.
func copyName(_ name: [UInt8], into buffer: UnsafeMutableRawBufferPointer) -> Int {
  let count = min(name.count, buffer.count)
  name.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
  return count
}

final class DirectoryObject: DirectoryImplementation {
  let node: Node
  init(_ node: Node) { self.node = node }

  func getName(name: UnsafeMutableRawBufferPointer) -> Int { copyName(node.name, into: name) }

  func getDirectory(name: UnsafeRawBufferPointer) -> Directory? {
    node.child(named: name, directory: true).flatMap { Directory.export(DirectoryObject($0)) }
  }

  func getFile(name: UnsafeRawBufferPointer) -> File? {
    node.child(named: name, directory: false).flatMap { File.export(FileObject($0)) }
  }

  func createDirectory(name: UnsafeRawBufferPointer) -> Directory? {
    guard !name.isEmpty, node.child(named: name, directory: true) == nil else { return nil }
    let child = Node(name: Array(name), isDirectory: true)
    node.children.append(child)
    return Directory.export(DirectoryObject(child))
  }

  func createFile(name: UnsafeRawBufferPointer) -> File? {
    guard !name.isEmpty, node.child(named: name, directory: false) == nil else { return nil }
    let child = Node(name: Array(name), isDirectory: false)
    node.children.append(child)
    return File.export(FileObject(child))
  }

  func listDirectories() -> Iterator {
    Iterator.export(NameIterator(node.children.filter { $0.isDirectory }))!
  }

  func listFiles() -> Iterator { Iterator.export(NameIterator(node.children.filter { !$0.isDirectory }))! }
}

final class FileObject: FileImplementation {
  let node: Node
  init(_ node: Node) { self.node = node }

  func getName(name: UnsafeMutableRawBufferPointer) -> Int { copyName(node.name, into: name) }

  func size() -> UInt { UInt(node.size) }

  func read(offset: UInt, data: UnsafeMutableRawBufferPointer) -> Int {
    guard let volume, Int(offset) < node.size else { return 0 }
    let length = min(data.count, node.size - Int(offset))
    let block = UnsafeMutableRawBufferPointer.allocate(byteCount: volume.blockSize, alignment: 16)
    defer { block.deallocate() }
    var done = 0
    while done < length {
      let position = Int(offset) + done
      let index = position / volume.blockSize
      let within = position % volume.blockSize
      let count = min(length - done, volume.blockSize - within)
      guard (try? volume.device.readBlock(index: node.blocks[index], data: block)) == volume.blockSize else {
        break
      }
      UnsafeMutableRawBufferPointer(rebasing: data[done..<(done + count)])
        .copyMemory(from: UnsafeRawBufferPointer(rebasing: block[within..<(within + count)]))
      done += count
    }
    return done
  }

  func write(offset: UInt, data: UnsafeRawBufferPointer) -> UInt {
    guard let volume else { return 0 }
    let block = UnsafeMutableRawBufferPointer.allocate(byteCount: volume.blockSize, alignment: 16)
    defer { block.deallocate() }
    var done = 0
    while done < data.count {
      let position = Int(offset) + done
      let index = position / volume.blockSize
      let within = position % volume.blockSize
      let count = min(data.count - done, volume.blockSize - within)
      while node.blocks.count <= index {
        guard let free = volume.freeBlocks.popLast() else { return UInt(done) }
        node.blocks.append(free)
        block.initializeMemory(as: UInt8.self, repeating: 0)
        guard (try? volume.device.writeBlock(index: free, data: UnsafeRawBufferPointer(block))) == 1 else {
          return UInt(done)
        }
      }
      guard (try? volume.device.readBlock(index: node.blocks[index], data: block)) == volume.blockSize else {
        break
      }
      UnsafeMutableRawBufferPointer(rebasing: block[within..<(within + count)])
        .copyMemory(from: UnsafeRawBufferPointer(rebasing: data[done..<(done + count)]))
      guard
        (try? volume.device.writeBlock(index: node.blocks[index], data: UnsafeRawBufferPointer(block))) == 1
      else { break }
      done += count
      node.size = max(node.size, position + count)
    }
    return UInt(done)
  }
}

final class NameIterator: IteratorImplementation {
  let names: [[UInt8]]
  var position = 0
  init(_ nodes: [Node]) { names = nodes.map { $0.name } }

  func next(name: UnsafeMutableRawBufferPointer) -> Int {
    guard position < names.count else { return 0 }
    position += 1
    return copyName(names[position - 1], into: name)
  }
}

final class FilesystemObject: FilesystemImplementation {
  let root = Node(name: Array("/".utf8), isDirectory: true)
  func getRootDirectory() -> Directory { Directory.export(DirectoryObject(root))! }
}

func start() -> Filesystem {
  volume = Volume()
  return Filesystem.export(FilesystemObject())!
}
