// Shell: reads lines from the terminal with line editing (LineEditor, KernelCore: the
// arrows, history, Tab completion of commands and instance names, Ctrl-C), runs commands,
// prints the kernel's answers. Its run() never returns: it is the last thing a
// composition runs.
//
// Contract: a command is its first word, in any case, after any spaces; an unknown one
// and one with the wrong arguments get different messages, the latter with its usage. A
// line longer than the editor takes is reported and not run.

import KernelCore
import ServerRuntime

/// Sends `bytes` to the terminal (it takes 256 bytes per call).
func send(bytes: UnsafeRawBufferPointer) {
  writeInPieces(bytes, of: 256) { _ = try? Required.terminal.write(data: $0) }
}

func send(_ message: KernelMessage) {
  message.withBytes { bytes in send(bytes: UnsafeRawBufferPointer(bytes)) }
}

/// Sends text whose lines end in "\n" as the terminal needs them ("\r\n").
func sendText(_ text: UnsafeRawBufferPointer) { writeTerminalText(text) { send(bytes: $0) } }

/// A command: its name, its argument (if it takes one) and what it does.
struct Command {
  let name: StaticString
  let argument: StaticString?
  let summary: StaticString
}

let commands: [Command] = [
  Command(name: "help", argument: nil, summary: "this list"),
  Command(
    name: "servers", argument: nil,
    summary: "the instances: placement, heap, objects, references, restarts, bindings"),
  Command(name: "threads", argument: nil, summary: "threads, their state and the servers they are in"),
  Command(name: "refs", argument: "NAME", summary: "the reference table of instance NAME"),
  Command(name: "mem", argument: nil, summary: "frames, heaps and every server's quota use"),
  Command(
    name: "profile", argument: nil,
    summary: "the addresses timer ticks hit most since the last profile (boot with profile)"),
  Command(name: "pci", argument: nil, summary: "the PCI functions the bus server found, like lspci"),
  Command(name: "uptime", argument: nil, summary: "time since boot"),
  Command(name: "run", argument: "NAME", summary: "run the Program instance NAME on this thread"),
  Command(
    name: "crash", argument: nil,
    summary: "make the shell fault (user mode: it is stopped and restarted; kernel mode: panic)"),
]

func bytes(_ text: StaticString) -> [UInt8] {
  Array(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
}

final class Interpreter: ProgramImplementation {
  private let output = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
  private var editor = LineEditor(maximumLength: 200)
  private let prompt = bytes("tessera> ")

  func run() -> UInt {
    send(
      "\r\nTessera shell: type help (Tab completes; the arrows edit and recall; Ctrl-C abandons a line)\r\n")
    while true {
      editor.reset()
      prompt.withUnsafeBytes { send(bytes: $0) }
      if readLine() { execute() }
    }
  }

  /// Edits a line until Enter (true) or Ctrl-C (false).
  private func readLine() -> Bool {
    while true {
      guard let word = try? Required.terminal.read() else {
        // The terminal's server failed: wait for its restart rather than spin.
        try? Required.clock.sleep(milliseconds: 100)
        continue
      }
      let byte = UInt8(truncatingIfNeeded: word)
      let event = editor.feed(byte)
      if event == .complete { complete() }
      flush()
      if event == .line { return true }
      if event == .cancelled { return false }
    }
  }

  private func flush() {
    guard !editor.output.isEmpty else { return }
    editor.output.withUnsafeBytes { send(bytes: $0) }
    editor.output.removeAll(keepingCapacity: true)
  }

  /// Tab: commands for the first word, instance names for the argument of refs and run.
  private func complete() {
    var candidates: [[UInt8]] = []
    if editor.currentWordIndex == 0 {
      candidates = commands.map { bytes($0.name) } + toolCommands().map { $0.name }
    } else if editor.currentWordIndex == 1, let first = words(editor.line).first,
      let command = command(named: first), command.argument != nil
    {
      candidates = instanceNames()
    }
    editor.complete(candidates: candidates, prompt: prompt)
  }

  /// The composition's instance names, from the kernel.
  private func instanceNames() -> [[UInt8]] {
    guard let count = try? Required.system.instances(text: output) else { return [] }
    return words(Array(UnsafeRawBufferPointer(rebasing: output[0..<count])), separator: UInt8(ascii: "\n"))
      .filter { $0.first != UInt8(ascii: "(") }  // "(N more lines did not fit)"
  }

  private func words(_ line: [UInt8], separator: UInt8 = UInt8(ascii: " ")) -> [[UInt8]] {
    line.split(separator: separator).map { Array($0) }
  }

  /// The command called `word`, in any case.
  private func command(named word: [UInt8]) -> Command? {
    let lowered = word.map { $0 >= UInt8(ascii: "A") && $0 <= UInt8(ascii: "Z") ? $0 + 32 : $0 }
    return commands.first { lowered == bytes($0.name) }
  }

  private func usage(_ command: Command) {
    if let argument = command.argument {
      send("usage: \(command.name) \(argument)\r\n")
    } else {
      send("usage: \(command.name)\r\n")
    }
  }

  private func show(_ filled: (UnsafeMutableRawBufferPointer) throws(CallError) -> Int) {
    do throws(CallError) {
      let count = try filled(output)
      sendText(UnsafeRawBufferPointer(rebasing: output[0..<count]))
    } catch {
      send("the kernel did not answer: \(error)\r\n")
    }
  }

  private func execute() {
    if editor.tooLong {
      send("line longer than \(editor.maximumLength) characters: not run\r\n")
      return
    }
    let parts = words(editor.line)
    guard let first = parts.first else { return }
    guard let command = command(named: first) else {
      // The tools' commands run in the tools' server and write to the terminal themselves.
      let ran = editor.line.prefix(256).withUnsafeBytes { (try? Required.tools.run(line: $0)) ?? 0 }
      if ran == 1 { return }
      send("unknown command '")
      first.withUnsafeBytes { send(bytes: $0) }
      send("' (type help)\r\n")
      return
    }
    let arguments = parts.count - 1
    guard arguments == (command.argument == nil ? 0 : 1) else {
      if command.argument == nil {
        send("\(command.name) takes no arguments\r\n")
      } else {
        send(
          arguments == 0
            ? "\(command.name): missing \(command.argument!)\r\n" : "\(command.name): one name only\r\n")
      }
      usage(command)
      return
    }
    let argument = arguments == 1 ? parts[1] : []
    guard argument.count <= 64 else {
      send("\(command.name): a name has at most 64 characters\r\n")
      return
    }
    if equals(command.name, "help") {
      help()
    } else if equals(command.name, "servers") {
      show { (buffer) throws(CallError) in try Int(Required.system.servers(text: buffer)) }
    } else if equals(command.name, "threads") {
      show { (buffer) throws(CallError) in try Int(Required.system.threads(text: buffer)) }
    } else if equals(command.name, "mem") {
      show { (buffer) throws(CallError) in try Int(Required.system.memory(text: buffer)) }
    } else if equals(command.name, "profile") {
      show { (buffer) throws(CallError) in try Int(Required.system.profile(text: buffer)) }
    } else if equals(command.name, "pci") {
      show { (buffer) throws(CallError) in try Int(Required.pci.list(text: buffer)) }
    } else if equals(command.name, "uptime") {
      let milliseconds = (try? Required.clock.uptimeMilliseconds()) ?? 0
      send("up \(milliseconds / 1000).\(milliseconds % 1000 / 100) s\r\n")
    } else if equals(command.name, "refs") {
      argument.withUnsafeBytes { name in
        show { (buffer) throws(CallError) in try Int(Required.system.references(name: name, text: buffer)) }
      }
    } else if equals(command.name, "run") {
      argument.withUnsafeBytes { name in
        show { (buffer) throws(CallError) in
          let count = try Required.system.run(
            name: name, text: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<256]))
          buffer[count] = UInt8(ascii: "\n")
          return count + 1
        }
      }
    } else if equals(command.name, "crash") {
      send("crashing on purpose\r\n")
      // A write through a pointer the compiler cannot know is wild (uptime is not 0).
      let uptime = UInt((try? Required.clock.uptimeMilliseconds()) ?? 1)
      UnsafeMutablePointer<UInt>(bitPattern: UInt(0xDEAD_0000) | (uptime == 0 ? 4 : 8))!.pointee = uptime
    }
  }

  private func help() {
    for command in commands {
      var line: KernelMessage = "\(command.name)"
      if let argument = command.argument {
        line.append(" ")
        line.append(argument)
      }
      while line.count < 12 { line.append(" ") }
      line.append(command.summary)
      send(line)
      send("\r\n")
    }
    for tool in toolCommands() {
      var line: KernelMessage = ""
      tool.name.withUnsafeBufferPointer { line.append(text: $0) }
      if !tool.argument.isEmpty {
        line.append(" ")
        tool.argument.withUnsafeBufferPointer { line.append(text: $0) }
      }
      while line.count < 12 { line.append(" ") }
      if line.count > 12 {
        send(line)
        send("\r\n")
        line = "            "
      }
      tool.summary.withUnsafeBufferPointer { line.append(text: $0) }
      send(line)
      send("\r\n")
    }
  }

  /// The commands of the tools bound to `tools` (none if the slot is empty).
  private func toolCommands() -> [(name: [UInt8], argument: [UInt8], summary: [UInt8])] {
    guard let count = try? Required.tools.commands(text: output) else { return [] }
    return words(Array(UnsafeRawBufferPointer(rebasing: output[0..<count])), separator: UInt8(ascii: "\n"))
      .map {
        let fields = $0.split(separator: UInt8(ascii: "\t"), omittingEmptySubsequences: false).map {
          Array($0)
        }
        return (fields[0], fields.count > 1 ? fields[1] : [], fields.count > 2 ? fields[2] : [])
      }
  }

  private func equals(_ left: StaticString, _ right: StaticString) -> Bool {
    bytes(left) == bytes(right)
  }
}

func start() -> Program {
  Program.export(Interpreter())!
}
