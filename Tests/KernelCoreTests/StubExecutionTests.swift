// StubExecutionTests: the generated call path run, not only read: bound stubs, their
// redirect, the gate, bound acquires and releases and the user-mode upcall stub, written by the real generators and
// executed on the host by the
// unicorn emulator (tools/run-stub) against a fake call chain, table and callees. Each
// test checks what the caller gets back, what the call chain and the lock hold during
// and after the call, and how many instructions the path takes.

import Foundation
import Testing

@testable import I686CodeGeneration
@testable import KernelCore

/// Memory, registers and a stop address for one run of tools/run-stub, and its answer.
struct Emulation {
  /// What tools/run-stub answers.
  struct Answer: Decodable {
    var registers: [String: UInt32]
    var reads: [[UInt32]]
    var instructions: Int
    var paused: Bool
    var error: String?

    /// Where a paused run stopped: the next instruction.
    var interrupted: UInt32 { registers["eip"]! }
  }

  var areas: [(address: UInt32, bytes: [UInt8])] = []

  mutating func place(_ address: UInt32, bytes: [UInt8]) { areas.append((address, bytes)) }
  mutating func place(_ address: UInt32, words: [UInt32]) {
    place(
      address, bytes: words.flatMap { word in (0..<4).map { UInt8(truncatingIfNeeded: word >> ($0 * 8)) } })
  }

  /// Writes code at `base` with a generator.
  mutating func place(code base: UInt32, _ body: (inout CodeBuffer) -> Void) {
    let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 1024, alignment: 16)
    defer { memory.deallocate() }
    var buffer = CodeBuffer(memory: memory, base: base)
    body(&buffer)
    place(base, bytes: Array(memory[0..<buffer.count]))
  }

  /// Runs on, in this machine, from where `paused` stopped (its stack and the registers
  /// generated code may use), at `eip`: where the kernel resumes a preempted thread.
  func resume(_ paused: Answer, at eip: UInt32, stop: UInt32, read: [(UInt32, Int)]) throws -> Answer {
    let registers = paused.registers
    return try run(
      eip: eip, esp: registers["esp"]!,
      registers: [
        "eax": registers["eax"]!, "ecx": registers["ecx"]!, "edx": registers["edx"]!,
        "eflags": registers["eflags"]!,
      ],
      stop: stop, read: read)
  }

  /// Runs from `eip` with `esp` (and `cr3`, and further `registers`) until `stop` executes,
  /// or with `pause` until that many instructions have run, then reads `read` (address,
  /// words).
  func run(
    eip: UInt32, esp: UInt32, cr3: UInt32 = 0, registers: [String: UInt32] = [:], stop: UInt32,
    pause: Int? = nil, read: [(UInt32, Int)]
  ) throws -> Answer {
    // Interrupts on, as a caller has them.
    let start = ["eflags": 0x202].merging(registers) { $1 }.merging(["eip": eip, "esp": esp, "cr3": cr3]) {
      $1
    }
    var request: [String: Any] = [
      "memory": areas.map {
        ["address": $0.address, "bytes": $0.bytes.map { String(format: "%02x", $0) }.joined()]
      },
      "registers": start,
      "stop": stop,
      "read": read.map { ["address": $0.0, "words": $0.1] },
    ]
    if let pause { request["pause"] = pause }
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent()
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    process.arguments = [root.appendingPathComponent("tools/run-stub").path]
    let input = Pipe()
    let output = Pipe()
    let errors = Pipe()
    process.standardInput = input
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    input.fileHandleForWriting.write(try JSONSerialization.data(withJSONObject: request))
    try input.fileHandleForWriting.close()
    let answer = output.fileHandleForReading.readDataToEndOfFile()
    let complaint = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    try #require(
      process.terminationStatus == 0,
      "tools/run-stub failed (it needs Debian's python3-unicorn: make dependencies installs it): \(complaint)"
    )
    return try JSONDecoder().decode(Answer.self, from: answer)
  }
}

@Suite struct StubExecutionTests {
  // The fake kernel's layout (the gate tests' call chain at 0x3000).
  let chain = CallStubTests().chain
  let stub: UInt32 = 0x1000
  let gate: UInt32 = 0x1400
  let table = TableLayout(base: 0x2000, capacity: 0x2004)
  let entries: UInt32 = 0x2100
  let lockWord: UInt32 = 0x4000
  let failedWord: UInt32 = 0x4008
  /// Writes the depth it saw at 0x6000 and the lock word at 0x6008, returns context + word 0.
  let dispatch: UInt32 = 0x5000
  /// The method's entry in the vector (what the gate and the general path call): returns 0xBBBB.
  let entry: UInt32 = 0x5100
  /// Like `dispatch`, and marks the lock contended (a waiter arrived during the call).
  let contendingDispatch: UInt32 = 0x5200
  let vector: UInt32 = 0xA000
  /// The kernel's release(lock): records its argument at 0x6004 and frees the lock.
  let release: UInt32 = 0x7000
  let seen: UInt32 = 0x6000
  let stop: UInt32 = 0xF000
  let stackTop: UInt32 = 0x8000
  let context: UInt32 = 0x9000
  let object: UInt32 = 0x8001
  let thread: UInt32 = 5

  /// The fake kernel: chain at `depth`, the callees, the vector (method 0 -> `entry`), one
  /// live table entry (handle 1, selector 0x50), and the caller's stack: return to `stop`,
  /// handle, selector, words 100, 200, 300.
  func machine(depth: UInt32, lock: UInt32 = 0, handle: UInt32 = 1, selector: UInt32 = 0x50) -> Emulation {
    var machine = Emulation()
    machine.place(chain.depth, words: [depth] + Array(repeating: 0, count: 2 * 64 + 64 + 64))
    machine.place(chain.threadNumber, words: [thread])
    machine.place(lockWord, words: [lock, 0, 0])
    let recordDepthAndLock: [UInt8] =
      [0x8B, 0x0D, 0x00, 0x30, 0x00, 0x00, 0x89, 0x0D, 0x00, 0x60, 0x00, 0x00]  // [0x6000] = depth
      + [0x8B, 0x0D, 0x00, 0x40, 0x00, 0x00, 0x89, 0x0D, 0x08, 0x60, 0x00, 0x00]  // [0x6008] = lock
    let sum: [UInt8] = [0x8B, 0x44, 0x24, 0x04, 0x03, 0x44, 0x24, 0x0C, 0xC3]  // eax = ctx + w0; ret
    machine.place(dispatch, bytes: recordDepthAndLock + sum)
    machine.place(entry, bytes: [0xB8, 0xBB, 0xBB, 0x00, 0x00, 0xC3])
    machine.place(
      contendingDispatch,
      bytes: recordDepthAndLock + [0x81, 0x0D, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80] + sum)
    machine.place(
      release,
      bytes: [0x8B, 0x44, 0x24, 0x04, 0xA3, 0x04, 0x60, 0x00, 0x00]  // [0x6004] = lock address
        + [0xC7, 0x05, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xC3])  // lock = 0; ret
    machine.place(seen, words: [0, 0, 0])
    machine.place(vector, words: [0, entry])
    machine.place(table.base, words: [entries, 4])
    var live = [UInt32](repeating: 0, count: 16)
    live[CallABI.Entry.context] = context
    live[CallABI.Entry.methods] = vector + 4
    live[CallABI.Entry.digest] = 0x50
    live[CallABI.Entry.methodCount] = 1
    live[CallABI.Entry.server] = object
    live[CallABI.Entry.count] = 1
    machine.place(
      entries, words: [UInt32](repeating: 0, count: 16) + live + [UInt32](repeating: 0, count: 32))
    machine.place(stop, bytes: [0xF4])
    machine.place(stackTop - 0x100, words: [UInt32](repeating: 0, count: 64))
    machine.place(stackTop - 24, words: [stop, handle, selector, 100, 200, 300])
    machine.place(code: gate) { CallStubs.writeGate(into: &$0, table: table, chain: chain) }
    return machine
  }

  func boundTarget(lock: Bool = false) -> CallStubs.BoundTarget {
    CallStubs.BoundTarget(
      chainValue: object, context: context, entry: vector + 4,
      lock: lock
        ? CallStubs.BoundLock(lock: lockWord, failed: failedWord, dispatch: dispatch, release: release) : nil)
  }

  /// Runs a call from the caller's stack; reads the depth, the record at `record`, the
  /// stack's six words and what the callee saw.
  func call(_ machine: Emulation, at start: UInt32, record: UInt32) throws -> (
    Emulation.Answer, depth: UInt32, record: [UInt32], stack: [UInt32], seen: [UInt32], lock: UInt32
  ) {
    let answer = try machine.run(
      eip: start, esp: stackTop - 24, stop: stop,
      read: [(chain.depth, 1), (chain.records + 8 * record, 2), (stackTop - 24, 6), (seen, 3), (lockWord, 1)])
    #expect(answer.error == nil, "\(answer.error ?? "")")
    #expect(answer.registers["esp"] == stackTop - 20, "the caller's stack is as it left it")
    #expect(answer.registers["eflags"].map { $0 & 0x200 != 0 } == true, "interrupts are back on")
    return (answer, answer.reads[0][0], answer.reads[1], answer.reads[2], answer.reads[3], answer.reads[4][0])
  }

  @Test func aBoundCallEntersTheCalleeWithItsContextAndTheRecordCounted() throws {
    var machine = machine(depth: 2)
    machine.place(code: stub) { CallStubs.writeBoundStub(into: &$0, chain: chain, target: boundTarget()) }
    machine.place(vector, words: [0, dispatch])
    let (answer, depth, record, stack, seen, _) = try call(machine, at: stub, record: 2)
    #expect(answer.registers["eax"] == context + 100 && answer.registers["edx"] == 0)
    #expect(seen[0] == 3, "the record counted while the callee ran")
    #expect(depth == 2, "and popped after")
    #expect(record == [stop, object], "the record held the caller's return and the object")
    #expect(
      Array(stack.dropFirst()) == [context, 0x50, 100, 200, 300], "the handle argument became the context")
    #expect(
      stack[0] > stub && stack[0] < stub + 64,
      "the caller's return went to the record; the stub's own call took its place")
    // The bound stub's 12 instructions and the callee's 7: docs/ARCHITECTURE.md and
    // docs/BENCHMARKS.md count them.
    #expect(answer.instructions == 12 + 7)
  }

  @Test func aBoundCallOnAFullChainFailsWithoutTouchingIt() throws {
    var machine = machine(depth: CallABI.chainCapacity)
    machine.place(code: stub) { CallStubs.writeBoundStub(into: &$0, chain: chain, target: boundTarget()) }
    machine.place(vector, words: [0, dispatch])
    let (answer, depth, _, stack, seen, _) = try call(machine, at: stub, record: 0)
    #expect(answer.registers["eax"] == 0 && answer.registers["edx"] == CallABI.statusOutOfResources)
    #expect(depth == CallABI.chainCapacity && seen[0] == 0, "no record, no call")
    #expect(stack == [stop, 1, 0x50, 100, 200, 300])
  }

  @Test func aRedirectedStubTakesTheGateWhichChecksTheHandleAndTheSelector() throws {
    for (handle, selector, status, result) in [
      (UInt32(1), UInt32(0x50), UInt32(0), UInt32(0xBBBB)), (2, 0x50, CallABI.statusInvalidHandle, 0),
      (9, 0x50, CallABI.statusInvalidHandle, 0), (1, 0x51, CallABI.statusWrongInterface, 0),
    ] {
      var machine = machine(depth: 0, handle: handle, selector: selector)
      // A live stub, then the redirect written over its start, as Server.entryFreeing does.
      machine.place(code: stub) { CallStubs.writeBoundStub(into: &$0, chain: chain, target: boundTarget()) }
      machine.place(code: stub) { CallStubs.writeBoundRedirect(into: &$0, gate: gate) }
      let answer = try machine.run(
        eip: stub, esp: stackTop - 24, stop: stop, read: [(chain.depth, 1), (chain.records, 2)])
      #expect(answer.error == nil, "\(answer.error ?? "")")
      #expect(answer.registers["eax"] == result && answer.registers["edx"] == status, "handle \(handle)")
      #expect(answer.registers["esp"] == stackTop - 20 && answer.reads[0][0] == 0)
      if status == 0 {
        #expect(answer.reads[1] == [stop, object], "the gate's record names the entry's object")
        // The redirect's 1, the gate's 28 (docs/ARCHITECTURE.md counts them) and the entry's 2.
        #expect(answer.instructions == 1 + 28 + 2)
      }
    }
  }

  /// A thread preempted after any instruction of a bound stub, while another thread frees
  /// the slot's entry (which writes the redirect over the stub's start): resumed where the
  /// stub's window says, it either finishes the call its counted record pins, or starts
  /// again, meets the redirect, and the gate refuses the freed handle. Never does it call
  /// the object without a counted record.
  @Test func aBoundStubPreemptedWhileItsSlotIsFreedFinishesOrIsRefused() throws {
    var executed = 0
    var unpinnedWithoutRewinding = 0
    while true {
      var first = machine(depth: 0)
      var window = CountWindow(start: 0, commit: 0)
      first.place(code: stub) {
        window = CallStubs.writeBoundStub(into: &$0, chain: chain, target: boundTarget())
      }
      first.place(vector, words: [0, dispatch])
      let stack = (stackTop - 0x100, 64)
      let paused = try first.run(
        eip: stub, esp: stackTop - 24, stop: stop, pause: executed,
        read: [(chain.depth, 1 + 2 * Int(CallABI.chainCapacity)), stack, (seen, 3)])
      #expect(paused.error == nil, "\(paused.error ?? "")")
      guard paused.paused else { break }
      // Counted: the record is (or, the callee having run, was) in the chain.
      let counted = paused.reads[0][0] == 1 || paused.reads[2][0] != 0
      for rewinding in [true, false] {
        // The entry is freed meanwhile: the redirect goes over the stub, the entry's
        // methods go to 0.
        var second = machine(depth: 0)
        second.place(code: stub) { CallStubs.writeBoundStub(into: &$0, chain: chain, target: boundTarget()) }
        second.place(code: stub) { CallStubs.writeBoundRedirect(into: &$0, gate: gate) }
        second.place(vector, words: [0, dispatch])
        second.place(entries + UInt32(4 * (16 + CallABI.Entry.methodCount)), words: [0])
        second.place(chain.depth, words: paused.reads[0])
        second.place(stack.0, words: paused.reads[1])
        second.place(seen, words: paused.reads[2])
        let interrupted = paused.interrupted
        let resumed = try second.resume(
          paused, at: rewinding ? window.resumeAddress(interruptedAt: interrupted) : interrupted, stop: stop,
          read: [(chain.depth, 1), (seen, 1)])
        let calledWithoutRecord =
          resumed.error == nil && resumed.registers["eax"] == context + 100 && !counted
          && resumed.reads[1][0] == 1
        guard rewinding else {
          if resumed.error != nil || calledWithoutRecord { unpinnedWithoutRewinding += 1 }
          continue
        }
        #expect(resumed.error == nil, "preempted after \(executed): \(resumed.error ?? "")")
        #expect(resumed.reads[0][0] == 0, "preempted after \(executed): the chain is as it was")
        if counted {
          #expect(
            resumed.registers["eax"] == context + 100 && resumed.registers["edx"] == 0,
            "preempted after \(executed), record counted: the call finishes")
        } else {
          #expect(
            resumed.registers["eax"] == 0 && resumed.registers["edx"] == CallABI.statusInvalidHandle,
            "preempted after \(executed), record not counted: the gate refuses the freed handle")
        }
      }
      executed += 1
    }
    #expect(executed >= 12, "every instruction boundary of the stub and the callee was tried")
    // The test can fail: resumed where they stopped, some threads call the freed object
    // with no record counted, or run into the redirect's bytes.
    #expect(unpinnedWithoutRewinding > 0)
  }

  @Test func aBoundCallIntoALockedServerTakesTheFreeLockAndFreesIt() throws {
    var machine = machine(depth: 1)
    machine.place(code: stub) {
      CallStubs.writeBoundStub(into: &$0, chain: chain, target: boundTarget(lock: true))
    }
    let (answer, depth, _, _, seen, lock) = try call(machine, at: stub, record: 1)
    #expect(answer.registers["eax"] == context + 100 && answer.registers["edx"] == 0)
    #expect(seen[0] == 2 && seen[2] == thread, "the callee ran counted, with the lock this thread's")
    #expect(lock == 0 && depth == 1, "the lock is free again and the record popped")
    let flags = try machine.run(eip: stub, esp: stackTop - 24, stop: stop, read: [(chain.lockFlags + 4, 1)])
    #expect(flags.reads[0][0] == 0, "the record's lock flag is cleared")
  }

  @Test func aLockHeldOrAFailedServerTakesTheMethodsEntry() throws {
    for (lock, failed) in [(UInt32(9), UInt32(0)), (thread, 0), (0, 1)] {
      var machine = machine(depth: 0, lock: lock)
      machine.place(failedWord, words: [failed])
      machine.place(code: stub) {
        CallStubs.writeBoundStub(into: &$0, chain: chain, target: boundTarget(lock: true))
      }
      let (answer, depth, _, _, _, after) = try call(machine, at: stub, record: 0)
      #expect(
        answer.registers["eax"] == 0xBBBB, "lock \(lock), failed \(failed): the entry (the lock stub) ran")
      #expect(after == lock && depth == 0, "the lock is untouched")
    }
  }

  @Test func aLockFoundContendedIsHandedOnThroughRelease() throws {
    var machine = machine(depth: 0)
    machine.place(code: stub) {
      CallStubs.writeBoundStub(
        into: &$0, chain: chain,
        target: CallStubs.BoundTarget(
          chainValue: object, context: context, entry: vector + 4,
          lock: CallStubs.BoundLock(
            lock: lockWord, failed: failedWord, dispatch: contendingDispatch, release: release)
        ))
    }
    let (answer, depth, _, _, seen, lock) = try call(machine, at: stub, record: 0)
    #expect(answer.registers["eax"] == context + 100 && answer.registers["edx"] == 0, "the result survives")
    #expect(seen[1] == lockWord, "release was called with the lock")
    #expect(lock == 0 && depth == 0)
  }
}

/// The fake kernel of the acquire and release tests: where the table, the code, the
/// kernel's last-count function and the caller's stack are.
protocol CountingMachine {}

extension CountingMachine {
  var table: TableLayout { TableLayout(base: 0x2000, capacity: 0x2004) }
  /// The table's entries (before it grows, in the preemption tests).
  var entries: UInt32 { 0x2100 }
  var code: UInt32 { 0x1000 }
  var lastCount: UInt32 { 0x7000 }
  /// Where `lastCount` records the handle it was given.
  var lastCountSaw: UInt32 { 0x6000 }
  var stop: UInt32 { 0xF000 }
  var stackTop: UInt32 { 0x8000 }

  /// Places the kernel's last-count function (it records the handle at [esp+4] at
  /// `lastCountSaw`, returns 0) with `seen` recorded so far, and the stop.
  func placeKernel(in machine: inout Emulation, seen: UInt32 = 0) {
    machine.place(
      lastCount,
      bytes: [0x8B, 0x44, 0x24, 0x04, 0xA3]
        + (0..<4).map { UInt8(truncatingIfNeeded: lastCountSaw >> ($0 * 8)) } + [0x31, 0xC0, 0xC3])
    machine.place(lastCountSaw, words: [seen])
    machine.place(stop, bytes: [0xF4])
  }
}

/// A bound acquire and release (`tessera_bound_acquire_<slot>`) run against a fake table.
@Suite struct BoundCountExecutionTests: CountingMachine {

  /// Runs slot 3's bound acquire or release with the entry's method count and count;
  /// returns EAX, the count after, and the handle lastCount saw (0 if not called).
  /// With `general`, the table's general acquire or release runs instead, given handle 3.
  func run(acquire: Bool, general: Bool = false, methods: UInt32 = 1, count: UInt32) throws -> (
    status: UInt32, count: UInt32, lastCountSaw: UInt32, instructions: Int
  ) {
    var machine = Emulation()
    var live = [UInt32](repeating: 0, count: 16)
    live[CallABI.Entry.methodCount] = methods
    live[CallABI.Entry.count] = count
    // Only 4 entries: the stub reads the entry from the base alone (no capacity check).
    machine.place(table.base, words: [entries, 4])
    machine.place(entries, words: [UInt32](repeating: 0xEEEE_EEEE, count: 3 * 16) + live)
    placeKernel(in: &machine)
    // The handle argument is not the slot: the last count must still name the slot.
    machine.place(stackTop - 16, words: [stop, general ? 3 : 7, 0, 0])
    machine.place(code: code) {
      switch (acquire, general) {
      case (true, false): CallStubs.writeBoundAcquire(into: &$0, table: table, slot: 3)
      case (false, false): CallStubs.writeBoundRelease(into: &$0, table: table, slot: 3, lastCount: lastCount)
      case (true, true): CallStubs.writeAcquire(into: &$0, table: table)
      case (false, true): CallStubs.writeRelease(into: &$0, table: table, lastCount: lastCount)
      }
    }
    let answer = try machine.run(
      eip: code, esp: stackTop - 16, stop: stop,
      read: [(entries + 3 * 64 + UInt32(4 * CallABI.Entry.count), 1), (lastCountSaw, 1)])
    #expect(answer.error == nil, "\(answer.error ?? "")")
    return (answer.registers["eax"]!, answer.reads[0][0], answer.reads[1][0], answer.instructions)
  }

  @Test func aBoundAcquireCountsOnTheSlotsEntry() throws {
    let counted = try run(acquire: true, count: 2)
    #expect(counted.status == 0 && counted.count == 3)
    #expect(counted.instructions == 6, "mov, cmp, jae, inc, xor, ret")
    let general = try run(acquire: true, general: true, count: 2)
    #expect(general.status == 0 && general.count == 3)
    #expect(general.instructions == 10, "the general acquire also loads and bounds-checks the handle")
    for general in [false, true] {
      let freed = try run(acquire: true, general: general, methods: 0, count: CallABI.freeCount)
      #expect(
        freed.status == CallABI.statusInvalidHandle && freed.count == CallABI.freeCount,
        "a freed slot entry is refused")
      let full = try run(acquire: true, general: general, count: CallABI.largestCount)
      #expect(
        full.status == CallABI.statusOutOfResources && full.count == CallABI.largestCount,
        "never above the largest")
      let retaken = try run(acquire: true, general: general, count: 0)
      #expect(retaken.status == 0 && retaken.count == 1, "a live entry counted down to 0 may be taken again")
    }
  }

  @Test func aBoundReleaseDropsACountAndHandsTheLastToTheKernel() throws {
    let dropped = try run(acquire: false, count: 2)
    #expect(dropped.status == 0 && dropped.count == 1 && dropped.lastCountSaw == 0)
    #expect(dropped.instructions == 5, "mov, dec, jle, xor, ret")
    let general = try run(acquire: false, general: true, count: 2)
    #expect(general.status == 0 && general.count == 1 && general.instructions == 9)
    let largest = try run(acquire: false, count: CallABI.largestCount)
    #expect(largest.status == 0 && largest.count == CallABI.largestCount - 1 && largest.instructions == 5)
    let last = try run(acquire: false, count: 1)
    #expect(
      last.status == 0 && last.count == 0 && last.lastCountSaw == 3, "the kernel gets the slot's handle")
    let generalLast = try run(acquire: false, general: true, count: 1)
    #expect(generalLast.status == 0 && generalLast.count == 0 && generalLast.lastCountSaw == 3)
    for general in [false, true] {
      let freed = try run(acquire: false, general: general, methods: 0, count: CallABI.freeCount)
      #expect(
        freed.status == CallABI.statusInvalidHandle && freed.count == CallABI.freeCount
          && freed.lastCountSaw == 0,
        "a freed entry is refused, its count undone")
      let none = try run(acquire: false, general: general, count: 0)
      #expect(
        none.status == CallABI.statusInvalidHandle && none.count == 0 && none.lastCountSaw == 0,
        "a count of 0 is not released below 0")
    }
  }
}

/// An acquire or release preempted after each of its instructions while the table grows
/// (a new array at a new base, the old one left as it was): resumed where
/// `CountWindow.resumeAddress` says, the count lands in the new array exactly once, and a
/// release of the last count reaches the kernel with the slot's handle.
@Suite struct PreemptedCountExecutionTests: CountingMachine {
  /// The array the table grows into.
  let newEntries: UInt32 = 0x3100
  let slot = 3

  enum Kind: CaseIterable {
    case boundAcquire, boundRelease, acquire, release
    var acquires: Bool { self == .boundAcquire || self == .acquire }
  }

  /// The machine with the table's header, the arrays' words, the stack's, what the
  /// kernel's last count has recorded so far (`seen`) and the code of `kind`; returns the
  /// machine and the code's window.
  func machine(kind: Kind, header: [UInt32], old: [UInt32], new: [UInt32]?, stack: [UInt32], seen: UInt32 = 0)
    -> (Emulation, CountWindows)
  {
    var machine = Emulation()
    machine.place(table.base, words: header)
    machine.place(entries, words: old)
    if let new { machine.place(newEntries, words: new) }
    placeKernel(in: &machine, seen: seen)
    machine.place(stackTop - 16, words: stack)
    var windows = CountWindows()
    machine.place(code: code) {
      switch kind {
      case .boundAcquire: windows.append(CallStubs.writeBoundAcquire(into: &$0, table: table, slot: slot))
      case .boundRelease:
        let (count, undo) = CallStubs.writeBoundRelease(
          into: &$0, table: table, slot: slot, lastCount: lastCount)
        windows.append(count)
        windows.append(undo)
      case .acquire: windows.append(CallStubs.writeAcquire(into: &$0, table: table))
      case .release:
        let (count, undo) = CallStubs.writeRelease(into: &$0, table: table, lastCount: lastCount)
        windows.append(count)
        windows.append(undo)
      }
    }
    return (machine, windows)
  }

  /// Preempts `kind` on an entry holding `count` after `executed` instructions, grows the
  /// table, and resumes at the window's answer (or, with `rewinding` false, where it
  /// stopped); returns the count in the new array, the status and the handle the kernel's
  /// last count saw (0: not called), or nil if the code had finished before the preemption.
  func preempt(_ kind: Kind, count: UInt32, free: Bool = false, after executed: Int, rewinding: Bool = true)
    throws -> (count: UInt32, status: UInt32, lastCountSaw: UInt32)?
  {
    let entryWords = CallABI.entryWords
    var old = [UInt32](repeating: 0, count: 4 * entryWords)
    old[slot * entryWords + CallABI.Entry.methodCount] = free ? 0 : 1
    old[slot * entryWords + CallABI.Entry.count] = count
    let stack: [UInt32] = [stop, UInt32(slot), 0, 0]
    let (first, windows) = machine(kind: kind, header: [entries, 4], old: old, new: nil, stack: stack)
    let paused = try first.run(
      eip: code, esp: stackTop - 16, stop: stop, pause: executed,
      read: [(entries, 4 * entryWords), (stackTop - 16, 4), (lastCountSaw, 1)])
    #expect(paused.error == nil, "\(paused.error ?? "")")
    guard paused.paused else { return nil }
    // Another thread grows the table: the entries are copied to a larger array.
    let copied = paused.reads[0] + [UInt32](repeating: 0, count: 4 * entryWords)
    let (second, _) = machine(
      kind: kind, header: [newEntries, 8], old: paused.reads[0], new: copied, stack: paused.reads[1],
      seen: paused.reads[2][0])
    let interrupted = paused.interrupted
    let resumed = try second.resume(
      paused, at: rewinding ? windows.resumeAddress(interruptedAt: interrupted) : interrupted, stop: stop,
      read: [(newEntries + UInt32(4 * (slot * entryWords + CallABI.Entry.count)), 1), (lastCountSaw, 1)])
    #expect(resumed.error == nil, "\(resumed.error ?? "")")
    return (resumed.reads[0][0], resumed.registers["eax"]!, resumed.reads[1][0])
  }

  /// One case: the kind, the count before, whether the entry is free, and what the call
  /// must leave: the count and the status.
  struct Case: Sendable, CustomStringConvertible {
    var kind: Kind
    var count: UInt32
    var free = false
    var expected: UInt32
    var status: UInt32 = 0
    var description: String { "\(kind) from \(count)\(free ? ", free" : "")" }
  }

  static let cases: [Case] = [
    Case(kind: .boundAcquire, count: 2, expected: 3), Case(kind: .acquire, count: 2, expected: 3),
    Case(kind: .boundRelease, count: 2, expected: 1), Case(kind: .release, count: 2, expected: 1),
    Case(kind: .boundRelease, count: 1, expected: 0), Case(kind: .release, count: 1, expected: 0),
    // The second part of release, which undoes the `dec` with a store: a free entry, a
    // count of 0.
    Case(
      kind: .boundRelease, count: CallABI.freeCount, free: true, expected: CallABI.freeCount,
      status: CallABI.statusInvalidHandle),
    Case(
      kind: .release, count: CallABI.freeCount, free: true, expected: CallABI.freeCount,
      status: CallABI.statusInvalidHandle),
    Case(kind: .boundRelease, count: 0, expected: 0, status: CallABI.statusInvalidHandle),
    Case(kind: .release, count: 0, expected: 0, status: CallABI.statusInvalidHandle),
  ]

  @Test(arguments: cases)
  func aPreemptedCountLandsInTheGrownTableOnce(_ test: Case) throws {
    let (kind, count, free, expected, status) = (test.kind, test.count, test.free, test.expected, test.status)
    // Only a release of the last count calls the kernel, with the slot's handle.
    let lastCountSaw: UInt32 = !kind.acquires && count == 1 ? UInt32(slot) : 0
    var preemptions = 0
    var lostWithoutRewinding = 0
    var executed = 0
    while let result = try preempt(kind, count: count, free: free, after: executed) {
      #expect(
        result.count == expected && result.status == status && result.lastCountSaw == lastCountSaw,
        "preempted after \(executed) instructions")
      if let unguarded = try preempt(kind, count: count, free: free, after: executed, rewinding: false),
        unguarded.count != expected
      {
        lostWithoutRewinding += 1
      }
      preemptions += 1
      executed += 1
    }
    #expect(preemptions >= 5, "every instruction boundary was tried")
    // The test can fail: resumed where they stopped, some preemptions lose the count.
    #expect(lostWithoutRewinding > 0)
  }
}

/// The upcall stub (the method entry of a user-mode server) run against a fake space: it
/// must claim the user stack exactly as `UserStacks.claim` (the kernel's Swift upcall)
/// does, write the frame, count the thread in, switch the address space and undo it all.
@Suite struct UpcallStubExecutionTests {
  let chain = CallStubTests().chain
  let stub: UInt32 = 0x1000
  let words: UInt32 = 0x4000
  let stackPointers: UInt32 = 0x4100
  let spaceCount: UInt32 = 0x4200
  let state: UInt32 = 0x4300
  let seen: UInt32 = 0x6000
  /// The fake arch_upcall: writes what it sees at 0x6000..., returns 0x1234.
  let upcall: UInt32 = 0x7100
  let failedAfterUpcall: UInt32 = 0x7200
  /// The fake general path (user_call_words): records its arguments' address, returns 0xDEAD.
  let slow: UInt32 = 0x9000
  /// The fake lock release: records its argument, frees the lock.
  let release: UInt32 = 0xA000
  let dispatch: UInt32 = 0x4010_0000
  let trampoline: UInt32 = 0x4000_0000
  let calleeDirectory: UInt32 = 0x77_7000
  let callerDirectory: UInt32 = 0x11_1000
  let runningBefore: UInt32 = 0x9999
  let stop: UInt32 = 0xF000
  let stackTop: UInt32 = 0x8000
  let thread: UInt32 = 5
  let object: UInt32 = 0x8001

  /// Stores [address] into seen + offset: `mov eax, [address]; mov [seen+offset], eax`.
  func record(_ address: UInt32, at offset: UInt32) -> [UInt8] {
    [0xA1] + bytes(address) + [0xA3] + bytes(0x6000 + offset)
  }
  func bytes(_ word: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: word >> ($0 * 8)) } }

  func machine(current: UInt32, lock: UInt32 = 0, locked: Bool = false) -> Emulation {
    var machine = Emulation()
    machine.place(chain.depth, words: [1, stop, object] + Array(repeating: 0, count: 2 * 63 + 64 + 64))
    machine.place(chain.threadNumber, words: [thread])
    machine.place(
      words,
      words: [lock, 0, 0, 0, 0xD00D, stackPointers, calleeDirectory, spaceCount]
        + Array(repeating: 0, count: 8))
    var pointers = [UInt32](repeating: 0, count: 8)
    pointers[Int(thread)] = current
    machine.place(stackPointers, words: pointers)
    machine.place(spaceCount, words: [0])
    machine.place(state, words: [0, 0, 0, callerDirectory, runningBefore, chain.threadNumber])
    machine.place(seen, words: Array(repeating: 0, count: 16))
    machine.place(
      upcall,
      bytes: [0x8B, 0x44, 0x24, 0x04, 0xA3] + bytes(0x6010)  // entry
        + [0x8B, 0x44, 0x24, 0x08, 0xA3] + bytes(0x6014)  // user stack
        + [0x0F, 0x20, 0xD8, 0xA3] + bytes(0x6018)  // cr3
        + record(words + 12, at: 0x1C) + record(spaceCount, at: 0x20) + record(state + 16, at: 0x24)
        + record(state + 12, at: 0x28) + record(words, at: 0x2C)
        + [0xB8, 0x34, 0x12, 0x00, 0x00, 0x31, 0xD2, 0xC3])  // eax = 0x1234, edx = 0
    machine.place(failedAfterUpcall, bytes: [0xC3])
    machine.place(
      slow,
      bytes: [0x8B, 0x44, 0x24, 0x08, 0xA3] + bytes(0x6034) + [0xB8, 0xAD, 0xDE, 0, 0, 0x31, 0xD2, 0xC3])
    machine.place(
      release,
      bytes: [0x8B, 0x44, 0x24, 0x04, 0xA3] + bytes(0x6030)
        + [0xC7, 0x05] + bytes(words) + bytes(0) + [0xC3])
    machine.place(stop, bytes: [0xF4])
    machine.place(stackTop - 0x100, words: Array(repeating: 0, count: 64))
    // Entered from a gate: its return address (dropped), context, selector, three words.
    machine.place(stackTop - 24, words: [0x1111, 0xC0C0, 0x50, 100, 200, 300])
    // The user stack pages a claim can touch.
    for page in [UserStacks.top(thread: thread) - 4096, UserStacks.bottom(thread: thread), 0xB005_7000] {
      machine.place(page, words: Array(repeating: 0, count: 1024))
    }
    let layout = UpcallLayout(
      kernel: UpcallKernel(
        chain: chain, state: state, taskStackPointer: 0, resumePoint: 0, trampoline: trampoline,
        failedAfterUpcall: failedAfterUpcall),
      serverWords: words, dispatch: dispatch, upcall: upcall, words: 3, lockRelease: locked ? release : nil)
    machine.place(code: stub) {
      CallStubs.writeUpcallStub(into: &$0, layout: layout, information: 0x8888, slow: slow)
    }
    return machine
  }

  func run(_ machine: Emulation, frameAt pointer: UInt32?) throws -> (Emulation.Answer, [[UInt32]]) {
    let answer = try machine.run(
      eip: stub, esp: stackTop - 24, cr3: callerDirectory, stop: stop,
      read: [
        (seen, 16), (stackPointers + 4 * thread, 1), (words, 4), (spaceCount, 1), (state + 12, 2),
        (chain.depth, 1), (pointer ?? seen, 6),
      ])
    #expect(answer.error == nil, "\(answer.error ?? "")")
    #expect(answer.registers["esp"] == stackTop - 20, "back to the gate's caller")
    return (answer, answer.reads)
  }

  @Test func aClaimKeepsTheSlackAboveTheGuardAndStaysInTheSlot() {
    let bottom = UserStacks.bottom(thread: 3)
    #expect(UserStacks.top(thread: 3) - bottom == UserStacks.slotBytes - UserStacks.guardBytes)
    #expect(UserStacks.claim(bytes: 32, current: 0, thread: 3) == UserStacks.top(thread: 3) - 32)
    #expect(UserStacks.claim(bytes: 32, current: bottom + 96, thread: 3) == bottom + 64)
    #expect(UserStacks.claim(bytes: 32, current: bottom + 80, thread: 3) == nil)
    #expect(UserStacks.claim(bytes: 32, current: bottom - 16, thread: 3) == nil, "below the slot")
    #expect(UserStacks.claim(bytes: 0xFFFF_FFF0, current: 0, thread: 3) == nil, "no wrap")
    #expect(UserStacks.frameBytes(arguments: 2) == 16 && UserStacks.frameBytes(arguments: 3) == 16)
    #expect(UserStacks.frameBytes(arguments: 4) == 32)
  }

  @Test func theStubClaimsTheUserStackAsTheKernelDoesAndUndoesEverything() throws {
    let bytes = UserStacks.frameBytes(arguments: 5)
    let bottom = UserStacks.bottom(thread: thread)
    for current in [
      0, 0xB005_8000, bottom + UserStacks.slack + bytes, bottom + UserStacks.slack + bytes - 16,
    ] {
      let claimed = UserStacks.claim(bytes: bytes, current: current, thread: thread)
      let (answer, reads) = try run(machine(current: current), frameAt: claimed)
      let seen = reads[0]
      guard let pointer = claimed else {
        // Too close to the guard: the general path, with the same arguments.
        #expect(answer.registers["eax"] == 0xDEAD, "current \(current): the general path")
        #expect(seen[0x34 / 4] == stackTop - 20, "it gets the context, selector and words")
        #expect(seen[0x10 / 4] == 0, "no upcall")
        continue
      }
      #expect(answer.registers["eax"] == 0x1234 && answer.registers["edx"] == 0)
      #expect(
        seen[0x10 / 4] == dispatch && seen[0x14 / 4] == pointer,
        "current \(current): claimed as the kernel does")
      #expect(reads[6] == [trampoline, 0xC0C0, 0x50, 100, 200, 300], "the frame: trampoline, then the words")
      #expect(seen[0x18 / 4] == calleeDirectory && seen[0x28 / 4] == calleeDirectory, "the callee's space")
      #expect(seen[0x1C / 4] == 1 && seen[0x20 / 4] == 1, "the thread counted in the server and the space")
      #expect(seen[0x24 / 4] == words, "the running server is the callee")
      // Undone: the slot's pointer, the counts, the space, the running server, the record.
      #expect(reads[1][0] == current && reads[2][3] == 0 && reads[3][0] == 0)
      #expect(reads[4] == [callerDirectory, runningBefore] && answer.registers["cr3"] == callerDirectory)
      #expect(reads[5][0] == 0, "the record is popped")
    }
  }

  @Test func aFrameTheKernelCannotBackUndoesTheUpcallWithOutOfResources() throws {
    // The callee's stack page is not there and cannot be backed: the write faults in the
    // range the stub returns, with CR3 switched and the slot claimed (and the lock taken,
    // for a locked server); its fixup undoes it all through the stub's way back.
    let top = UserStacks.top(thread: thread)
    // The frame wholly on the top page (the first write faults), and across its lower edge
    // (a later one does).
    for (locked, current) in [(false, 0), (true, 0), (false, top - 4096 + 16), (true, top - 4096 + 16)] {
      var machine = self.machine(current: current, locked: locked)
      machine.areas = machine.areas.filter { $0.address < top - 4096 || $0.address >= top }
      machine.place(top - 8192, words: Array(repeating: 0, count: 1024))
      var writes: FaultFixup? = nil
      let layout = UpcallLayout(
        kernel: UpcallKernel(
          chain: chain, state: state, taskStackPointer: 0, resumePoint: 0, trampoline: trampoline,
          failedAfterUpcall: failedAfterUpcall),
        serverWords: words, dispatch: dispatch, upcall: upcall, words: 3, lockRelease: locked ? release : nil)
      machine.place(code: stub) {
        writes = CallStubs.writeUpcallStub(into: &$0, layout: layout, information: 0x8888, slow: slow)
      }
      let changed: [(UInt32, Int)] = [
        (chain.depth, 1), (chain.lockFlags, 2), (stackPointers, 8), (words, 4), (state, 6),
        (stackTop - 0x40, 16),
      ]
      let faulted = try machine.run(
        eip: stub, esp: stackTop - 24, cr3: callerDirectory, stop: stop, read: changed)
      let eip = faulted.registers["eip"]!
      #expect(faulted.error != nil && writes!.contains(eip), "locked \(locked)")
      #expect((eip > writes!.start) == (current != 0), "the first write faults, or a later one")
      #expect(faulted.registers["cr3"] == calleeDirectory && faulted.reads[3][0] == (locked ? thread : 0))
      for (area, read) in zip(changed, faulted.reads) { machine.place(area.0, words: read) }
      var registers = faulted.registers
      for name in ["eip", "esp", "cr3"] { registers[name] = nil }
      let undone = try machine.run(
        eip: writes!.fixup, esp: faulted.registers["esp"]!, cr3: calleeDirectory, registers: registers,
        stop: stop,
        read: [
          (stackPointers + 4 * thread, 1), (words, 4), (spaceCount, 1), (state + 12, 2), (chain.depth, 1),
        ])
      #expect(undone.error == nil, "locked \(locked): \(undone.error ?? "")")
      #expect(undone.registers["eax"] == 0 && undone.registers["edx"] == CallABI.statusOutOfResources)
      #expect(undone.registers["esp"] == stackTop - 20, "back to the gate's caller")
      #expect(
        undone.reads[0] == [current] && undone.reads[1][0] == 0 && undone.reads[1][3] == 0
          && undone.reads[2] == [0]
      )
      #expect(undone.reads[3] == [callerDirectory, runningBefore] && undone.reads[4] == [0])
    }
  }

  @Test func aLockedServersStubTakesAFreeLockWithTheThreadsNumberAndFreesIt() throws {
    let (answer, reads) = try run(machine(current: 0, locked: true), frameAt: nil)
    #expect(answer.registers["eax"] == 0x1234)
    #expect(reads[0][0x2C / 4] == thread, "held by this thread during the upcall")
    #expect(reads[2][0] == 0 && reads[0][0x30 / 4] == 0, "free after, without release")
    let (busy, busyReads) = try run(machine(current: 0, lock: 9, locked: true), frameAt: nil)
    #expect(busy.registers["eax"] == 0xDEAD, "a held lock takes the general path, which waits")
    #expect(busyReads[2][0] == 9 && busyReads[1][0] == 0, "nothing claimed, the lock untouched")
  }
}
