// FileClient: exercises a Filesystem end to end and reports on the console. Every line
// it prints starts with "fs-demo:"; the last is "fs-demo: PASS" or "fs-demo: FAIL ...".

import KernelCore
import ServerRuntime

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

func text(_ literal: StaticString) -> UnsafeRawBufferPointer {
  UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount)
}

final class Client: ProgramImplementation {
  var failures = 0

  func check(_ condition: Bool, _ message: KernelMessage) {
    if !condition {
      failures += 1
      say("fs-demo: FAIL \(message)")
    }
  }

  func run() -> UInt {
    do throws(CallError) {
      try exercise()
    } catch {
      failures += 1
      say("fs-demo: FAIL a call failed")
    }
    say(failures == 0 ? "fs-demo: PASS" : "fs-demo: FAIL \(failures) problems")
    return UInt(failures)
  }

  private func exercise() throws(CallError) {
    let root = try Required.filesystem.getRootDirectory()
    guard let docs = try root.createDirectory(name: text("docs")),
      let source = try root.createDirectory(name: text("src")),
      let paper = try docs.createFile(name: text("paper.txt")),
      let main = try source.createFile(name: text("main.swift")),
      let readme = try root.createFile(name: text("README"))
    else {
      check(false, "could not create the tree")
      return
    }
    check(try root.createDirectory(name: text("docs")) == nil, "a second 'docs' was created")
    // 1500 bytes span three 512-byte blocks.
    let content = UnsafeMutableRawBufferPointer.allocate(byteCount: 1500, alignment: 16)
    let back = UnsafeMutableRawBufferPointer.allocate(byteCount: 1500, alignment: 16)
    let name = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 16)
    defer {
      content.deallocate()
      back.deallocate()
      name.deallocate()
    }
    for index in 0..<content.count { content[index] = UInt8(truncatingIfNeeded: index * 7 + 3) }
    let written = try paper.write(offset: 0, data: UnsafeRawBufferPointer(content))
    check(written == 1500, "wrote \(written) of 1500 bytes")
    _ = try main.write(offset: 0, data: text("print(\"hello\")"))
    _ = try readme.write(offset: 0, data: text("Tessera"))
    say("fs-demo: created /docs/paper.txt (\(try paper.size()) bytes), /src/main.swift, /README")

    // Read back through fresh references obtained by name.
    guard let docsAgain = try root.getDirectory(name: text("docs")),
      let paperAgain = try docsAgain.getFile(name: text("paper.txt"))
    else {
      check(false, "lookup by name failed")
      return
    }
    let read = try paperAgain.read(offset: 0, data: back)
    let equalContents = back.elementsEqual(content)
    check(read == 1500 && equalContents, "read back \(read) bytes that differ")
    let tailRead = try paperAgain.read(
      offset: 1450, data: UnsafeMutableRawBufferPointer(rebasing: back[0..<100]))
    check(tailRead == 50, "reading past the end gave \(tailRead) bytes")
    say("fs-demo: read back /docs/paper.txt: \(read) bytes, contents equal: \(equalContents)")

    // List the tree.
    var directories = 0
    var files = 0
    let iterator = try root.listDirectories()
    while true {
      let length = try iterator.next(name: name)
      if length == 0 { break }
      directories += 1
      say(
        "fs-demo: directory /\(text: UnsafeBufferPointer(rebasing: name.bindMemory(to: UInt8.self)[0..<length]))"
      )
    }
    let fileIterator = try root.listFiles()
    while try fileIterator.next(name: name) > 0 { files += 1 }
    check(directories == 2 && files == 1, "root lists \(directories) directories and \(files) files")
    let rootNameLength = try root.getName(name: name)
    check(rootNameLength == 1 && name[0] == UInt8(ascii: "/"), "root is not called /")

    // A forged handle is refused, never followed.
    let forged = Directory(handle: 4000)
    do throws(CallError) {
      _ = try forged.listFiles()
      check(false, "a forged handle was accepted")
    } catch {
      check(error == .invalidHandle, "a forged handle gave the wrong error")
      say("fs-demo: forged handle refused: invalidHandle")
    }
    // Blocks are checked against their declared bounds and against the caller's memory.
    let oversized = UnsafeMutableRawBufferPointer.allocate(byteCount: 5000, alignment: 16)
    defer { oversized.deallocate() }
    do throws(CallError) {
      _ = try paperAgain.read(offset: 0, data: oversized)
      check(false, "a 5000-byte block passed a 4096-byte bound")
    } catch {
      check(error == .blockTooLarge, "an oversized block gave the wrong error")
    }
    do throws(CallError) {
      _ = try paperAgain.read(
        offset: 0,
        data: UnsafeMutableRawBufferPointer(
          start: UnsafeMutableRawPointer(bitPattern: UInt(0xDEAD_0000)), count: 64))
      check(false, "a block in unmapped memory was accepted")
    } catch {
      check(error == .badBlock, "an unmapped block gave the wrong error")
    }
    say("fs-demo: oversized and unmapped blocks refused: blockTooLarge, badBlock")
    // Releasing a handle that is not in the table is refused too (in range and past it).
    check(
      !Directory(handle: 30).release() && !Directory(handle: 4000).release(), "a forged handle was released")
    check((try? Directory(handle: 30).acquire()) == nil, "a forged handle was acquired")
    // A handle of the wrong interface is refused.
    let confused = File(handle: root.handle)
    do throws(CallError) {
      _ = try confused.size()
      check(false, "a Directory was accepted as a File")
    } catch {
      check(error == .wrongInterface, "a wrong interface gave the wrong error")
    }

    for reference in [
      iterator.handle, fileIterator.handle, docsAgain.handle, paperAgain.handle, docs.handle, source.handle,
      paper.handle, main.handle, readme.handle, root.handle,
    ] {
      check(tessera_release_reference(reference), "releasing handle \(reference) failed")
    }
    say("fs-demo: released every reference")
  }
}

/// Releases a handle whatever its interface.
func tessera_release_reference(_ handle: UInt32) -> Bool {
  struct Any_: InterfaceReference {
    let handle: UInt32
    init(handle: UInt32) { self.handle = handle }
  }
  return Any_(handle: handle).release()
}

func start() -> Program {
  Program.export(Client())!
}
