// CodeBufferTests: the code generators' labels and jumps, on literal bytes.

import Testing

@testable import I686CodeGeneration
@testable import KernelCore

@Suite struct CodeBufferTests {
  func write(base: UInt32 = 0x1000, _ body: (inout CodeBuffer) -> Void) -> [UInt8] {
    let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 256, alignment: 16)
    defer { memory.deallocate() }
    var buffer = CodeBuffer(memory: memory, base: base)
    body(&buffer)
    #expect(buffer.isComplete, "every label jumped to was bound")
    return Array(memory[0..<buffer.count])
  }

  @Test func forwardJumpsArePatchedWhenTheirLabelIsBound() {
    let bytes = write { code in
      let done = code.label()
      code.jump(.equal, to: done, short: true)  // 74 rel8
      code.jump(.aboveOrEqual, to: done)  // 0F 83 rel32
      code.jump(to: done)  // E9 rel32
      code.emit(0x90)  // nop
      code.bind(done)
      code.emit(0xC3)  // ret
    }
    // `done` is byte 14; each displacement counts from the end of its jump.
    #expect(
      bytes == [
        0x74, 0x0C,  // 14 - 2
        0x0F, 0x83, 0x06, 0x00, 0x00, 0x00,  // 14 - 8
        0xE9, 0x01, 0x00, 0x00, 0x00,  // 14 - 13
        0x90, 0xC3,
      ])
  }

  @Test func backwardJumpsAreWrittenAtOnce() {
    let bytes = write { code in
      let top = code.label()
      code.bind(top)
      code.emit(0x90)
      code.jump(.notEqual, to: top, short: true)  // 75 rel8 back to 0: 0 - 3 = -3
      code.jump(.sign, to: top)  // 0F 88 rel32: 0 - 9 = -9
      code.jump(.notSign, to: top, short: true)  // 79: 0 - 11
      code.jump(.below, to: top, short: true)  // 72: 0 - 13
      code.jump(to: top, short: true)  // EB: 0 - 15
    }
    #expect(
      bytes == [
        0x90, 0x75, 0xFD, 0x0F, 0x88, 0xF7, 0xFF, 0xFF, 0xFF, 0x79, 0xF5, 0x72, 0xF3, 0xEB, 0xF1,
      ])
  }

  @Test func aLabelJumpedToFromSeveralPlacesPatchesThemAll() {
    let bytes = write(base: 0x8000_0000) { code in
      let shared = code.label()
      code.jump(.notEqual, to: shared)
      code.jump(.notEqual, to: shared)
      code.bind(shared)
      code.emit(0xC3)
    }
    #expect(bytes == [0x0F, 0x85, 0x06, 0x00, 0x00, 0x00, 0x0F, 0x85, 0x00, 0x00, 0x00, 0x00, 0xC3])
  }

  @Test func anUnboundLabelLeavesTheBufferIncomplete() {
    let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 16, alignment: 16)
    defer { memory.deallocate() }
    var code = CodeBuffer(memory: memory, base: 0)
    let nowhere = code.label()
    code.jump(to: nowhere)
    #expect(!code.isComplete)
  }
}
