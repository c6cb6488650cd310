// FramePassingBenchmark: see FramePassingBenchmark.server. Under `make bench` (-icount
// shift=0) time-stamp-counter deltas are guest instructions.
//
// Contract: each figure is the instructions per frame over `frames` frames after a
// warm-up, the loop included (its cost is a few instructions against hundreds). The
// sender writes each frame's header before passing it, as a layer would; the payload is
// written once. A call that fails or a sink that returns the wrong answer stops the
// benchmark with a `@@BENCH failed` line, which `tessera bench-report` rejects.

import KernelCore
import ServerRuntime
import TesseraABI

/// Frames per measured loop (a multiple of 16).
let frames: UInt64 = 16_000

func say(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

final class Runner: ProgramImplementation {
  let sink = Required.sink

  func run() -> UInt {
    var label = KernelMessage()
    setting("label") { name, value throws(CallError) in try Required.settings.value(name: name, value: value)
    }
    .withUnsafeBufferPointer { label.append(text: $0) }
    // 16 frame buffers of 2 KiB in memory the sink maps too.
    guard let memory = (try? Required.memory.allocate(bytes: 16 * 2048)) ?? nil,
      let address = try? Required.memory.map(memory: memory, writable: 1), address != 0,
      (try? sink.share(memory: memory)) == 1
    else {
      say("@@BENCH failed frames_\(label): no shared memory")
      return 1
    }
    let shared = UnsafeMutableRawPointer(bitPattern: address)!
    let batch = UnsafeMutableRawBufferPointer.allocate(byteCount: 24256, alignment: 4)
    defer { batch.deallocate() }
    for size in [60, 1514] {
      for slot in 0..<16 {
        (shared + slot * 2048).initializeMemory(as: UInt8.self, repeating: 0x5A, count: size)
      }
      guard let copy = measure({ copyFrames(shared, size: size) }),
        let batched = measure({ batchFrames(shared, batch, size: size) }),
        let leftShared = measure({ shareFrames(shared, size: size) })
      else {
        say("@@BENCH failed frames_\(size)_\(label): a call failed or the sink answered wrong")
        return 1
      }
      report("frames_copy_\(size)_\(label)", copy)
      report("frames_batch16_\(size)_\(label)", batched)
      report("frames_shared_\(size)_\(label)", leftShared)
    }
    return 0
  }

  /// Instructions of `frames` frames passed by `pass` (16 per call of it), after a warm-up
  /// round; nil if a round failed.
  private func measure(_ pass: () -> Bool) -> UInt64? {
    guard pass() else { return nil }
    let start = tessera_timestamp()
    for _ in 0..<(frames / 16) {
      guard pass() else { return nil }
    }
    return tessera_timestamp() &- start
  }

  /// Writes the header of the frame in slot `slot` (14 bytes, as a layer adds its header).
  @inline(__always)
  private func writeHeader(_ frame: UnsafeMutableRawPointer, _ slot: Int) {
    for index in 0..<14 {
      frame.storeBytes(of: UInt8(truncatingIfNeeded: slot &+ index), toByteOffset: index, as: UInt8.self)
    }
  }

  private func expectedSum(_ slot: Int) -> UInt {
    var sum: UInt = 0
    for index in 0..<14 { sum &+= UInt(UInt8(truncatingIfNeeded: slot &+ index)) }
    return sum
  }

  private func copyFrames(_ shared: UnsafeMutableRawPointer, size: Int) -> Bool {
    for slot in 0..<16 {
      let frame = shared + slot * 2048
      writeHeader(frame, slot)
      guard (try? sink.take(frame: UnsafeRawBufferPointer(start: frame, count: size))) == expectedSum(slot)
      else {
        return false
      }
    }
    return true
  }

  private func batchFrames(
    _ shared: UnsafeMutableRawPointer, _ batch: UnsafeMutableRawBufferPointer, size: Int
  ) -> Bool {
    var offset = 0
    for slot in 0..<16 {
      let frame = shared + slot * 2048
      writeHeader(frame, slot)
      batch[offset] = UInt8(truncatingIfNeeded: size)
      batch[offset + 1] = UInt8(truncatingIfNeeded: size >> 8)
      (batch.baseAddress! + offset + 2).copyMemory(from: frame, byteCount: size)
      offset += 2 + size
    }
    return (try? sink.takeBatch(frames: UnsafeRawBufferPointer(rebasing: batch[0..<offset]))) == 16
  }

  private func shareFrames(_ shared: UnsafeMutableRawPointer, size: Int) -> Bool {
    for slot in 0..<16 {
      writeHeader(shared + slot * 2048, slot)
      guard (try? sink.takeShared(offset: UInt(slot * 2048), length: UInt(size))) == expectedSum(slot) else {
        return false
      }
    }
    return true
  }

  private func report(_ name: KernelMessage, _ total: UInt64) {
    say(benchmarkLine(name, total: total, iterations: frames))
  }
}

func start() -> Program {
  Program.export(Runner())!
}
