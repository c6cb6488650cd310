// Shell: reads lines from the terminal (echoing them), runs commands, prints the kernel's
// answers. Its run() never returns: it is the last thing a composition runs.

import KernelCore
import ServerRuntime

func send(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.terminal.write(data: UnsafeRawBufferPointer(bytes)) }
}

func sendText(_ text: UnsafeRawBufferPointer) {
  // The terminal takes 256 bytes per call; a raw terminal needs "\r\n".
  var start = 0
  var index = 0
  while index < text.count {
    if text[index] == UInt8(ascii: "\n") {
      _ = try? Required.terminal.write(data: UnsafeRawBufferPointer(rebasing: text[start..<index]))
      send("\r\n")
      start = index + 1
    } else if index - start == 255 {
      _ = try? Required.terminal.write(data: UnsafeRawBufferPointer(rebasing: text[start...index]))
      start = index + 1
    }
    index += 1
  }
  if start < text.count {
    _ = try? Required.terminal.write(data: UnsafeRawBufferPointer(rebasing: text[start...]))
  }
}

final class Interpreter: ProgramImplementation {
  private let output = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
  private var line = [UInt8]()

  func run() -> UInt {
    send("\r\nTessera shell: type help\r\n")
    while true {
      send("tessera> ")
      readLine()
      execute()
    }
  }

  private func readLine() {
    line.removeAll(keepingCapacity: true)
    while true {
      let byte = UInt8(truncatingIfNeeded: (try? Required.terminal.read()) ?? 10)
      switch byte {
      case 13, 10:
        send("\r\n")
        return
      case 8, 127:
        if !line.isEmpty {
          line.removeLast()
          send("\u{8} \u{8}")
        }
      default:
        guard line.count < 64, byte >= 32 else { continue }
        line.append(byte)
        _ = withUnsafeBytes(of: byte) { try? Required.terminal.write(data: $0) }
      }
    }
  }

  private func word(_ text: StaticString) -> Bool {
    line.count == text.utf8CodeUnitCount
      && line.elementsEqual(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
  }

  private func show(_ filled: (UnsafeMutableRawBufferPointer) throws(CallError) -> Int) {
    do throws(CallError) {
      let count = try filled(output)
      sendText(UnsafeRawBufferPointer(rebasing: output[0..<count]))
    } catch {
      send("the kernel did not answer\r\n")
    }
  }

  private func execute() {
    if line.isEmpty { return }
    if word("help") {
      send(
        "help     this list\r\nservers  loaded servers, heap use, references\r\nthreads  threads and their state\r\n"
      )
      send(
        "refs S   the reference table of server S\r\nmem      frames and heaps\r\nuptime   time since boot\r\n"
      )
      send("crash    make the shell fault (user mode: it is stopped and restarted; kernel mode: panic)\r\n")
    } else if word("servers") {
      show { (buffer) throws(CallError) in try Int(Required.system.servers(text: buffer)) }
    } else if word("threads") {
      show { (buffer) throws(CallError) in try Int(Required.system.threads(text: buffer)) }
    } else if word("mem") {
      show { (buffer) throws(CallError) in try Int(Required.system.memory(text: buffer)) }
    } else if word("crash") {
      send("crashing on purpose\r\n")
      // A write through a pointer the compiler cannot know is wild (uptime is not 0).
      let uptime = UInt((try? Required.clock.uptimeMilliseconds()) ?? 1)
      UnsafeMutablePointer<UInt>(bitPattern: UInt(0xDEAD_0000) | (uptime == 0 ? 4 : 8))!.pointee = uptime
    } else if word("uptime") {
      let milliseconds = (try? Required.clock.uptimeMilliseconds()) ?? 0
      send("up \(milliseconds / 1000).\(milliseconds % 1000 / 100) s\r\n")
    } else if line.count > 5, line.starts(with: Array("refs ".utf8)) {
      let name = UnsafeMutableRawBufferPointer.allocate(byteCount: line.count - 5, alignment: 1)
      defer { name.deallocate() }
      name.copyBytes(from: line[5...])
      show { (buffer) throws(CallError) in
        try Int(Required.system.references(name: UnsafeRawBufferPointer(name), text: buffer))
      }
    } else {
      send("unknown command (type help)\r\n")
    }
  }
}

func start() -> Program {
  Program.export(Interpreter())!
}
