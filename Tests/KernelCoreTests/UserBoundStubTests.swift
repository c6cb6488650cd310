// UserBoundStubTests: a user-mode server's bound-call stubs (UserBoundStubs.swift) run in
// the unicorn emulator (tools/run-stub) against a fake pair of spaces: the call into
// another space from `sysenter` to the `sysexit` into the callee, and the way back from the
// upcall frame to the `sysexit` into the caller; every refusal and fall-back to the general
// path; the redirect and the direct stub. Paging is off in the emulator, so both spaces'
// stacks share one memory: the caller's words and the callee's frame lie apart in it.

import Testing

@testable import I686CodeGeneration
@testable import KernelCore

@Suite struct UserBoundStubExecutionTests {
  let chain = CallStubTests().chain  // 0x3000...
  let stub: UInt32 = 0x1000
  let entryStack: UInt32 = 0x2F00
  let state: UInt32 = 0x4300
  let taskStackPointer: UInt32 = 0x4340
  let resumePoint: UInt32 = 0x4344
  let calleeWords: UInt32 = 0x5000
  let callerWords: UInt32 = 0x5200
  let callerPointers: UInt32 = 0x5400
  let calleePointers: UInt32 = 0x5500
  let spaceCount: UInt32 = 0x5600
  let failedSeen: UInt32 = 0x6040
  let failedAfterUpcall: UInt32 = 0x7200
  let general: UInt32 = 0x7300
  let fakeReturn: UInt32 = 0x7400
  /// Where the caller resumes (EDX at its sysenter).
  let userResume: UInt32 = 0x4000_0BAD
  let trampoline: UInt32 = 0x4000_0000
  let dispatch: UInt32 = 0x4010_0000
  let callerDirectory: UInt32 = 0x11_1000
  let calleeDirectory: UInt32 = 0x77_7000
  let thread: UInt32 = 5
  let object: UInt32 = 0x8001
  let enclosingResume: UInt32 = 0x4444
  /// The caller's user registers, which must come back and must not reach the callee.
  let callerRegisters: [String: UInt32] = ["esi": 0x5151, "edi": 0xD1D1, "ebp": 0xB9B9]
  /// The caller's stack, well inside its slot: saved EBX, return address, handle,
  /// selector, three words.
  var callerStack: UInt32 { UserStacks.top(thread: thread) - 0x200 }

  func target(words: Int = 3) -> UserBoundTarget {
    UserBoundTarget(
      kernel: UpcallKernel(
        chain: chain, state: state, taskStackPointer: taskStackPointer, resumePoint: resumePoint,
        trampoline: trampoline, failedAfterUpcall: failedAfterUpcall),
      callee: UpcallCallee(
        serverWords: calleeWords, directory: calleeDirectory, stackPointers: calleePointers,
        spaceThreadsInside: spaceCount, chainValue: object, context: 0xC0C0, selector: 0x5E1E,
        dispatch: dispatch,
        callWords: words),
      callerWords: callerWords, callerDirectory: callerDirectory, callerStackPointers: callerPointers,
      general: general)
  }

  func bytes(_ word: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: word >> ($0 * 8)) } }

  /// The fake spaces, with the callee's slot pointer `calleeCurrent`, `depth` records in
  /// the chain and the callee failed if `failed`; and the stub written.
  func machine(calleeCurrent: UInt32 = 0, depth: UInt32 = 1, failed: UInt32 = 0) -> (
    Emulation, UserBoundStubAddresses
  ) {
    var machine = Emulation()
    machine.place(chain.depth, words: [depth] + Array(repeating: 0xEEEE, count: 2 * 64 + 64 + 64))
    machine.place(chain.threadNumber, words: [thread])
    machine.place(entryStack - 0x400, words: Array(repeating: 0, count: 0x110))
    machine.place(
      state, words: [entryStack, 9, taskStackPointer, callerDirectory, callerWords, chain.threadNumber])
    machine.place(taskStackPointer, words: [entryStack, enclosingResume])
    var callee = [UInt32](repeating: 0, count: ServerWords.count)
    callee[ServerWords.failed] = failed
    machine.place(calleeWords, words: callee)
    machine.place(callerWords, words: [UInt32](repeating: 0, count: ServerWords.count))
    var pointers = [UInt32](repeating: 0, count: 8)
    pointers[Int(thread)] = 0xB005_F000  // the caller's, from an upcall into it
    machine.place(callerPointers, words: pointers)
    pointers[Int(thread)] = calleeCurrent
    machine.place(calleePointers, words: pointers)
    machine.place(spaceCount, words: [2])
    machine.place(failedSeen, words: [0])
    machine.place(failedAfterUpcall, bytes: [0xC7, 0x05] + bytes(failedSeen) + bytes(1) + [0xC3])
    machine.place(general, bytes: [0xF4])
    // What the return trampoline's sysenter does (UserMode.S's upcall_returned): result
    // 0x77, status 0, the frame popped and returned through.
    machine.place(
      fakeReturn,
      bytes: [0x8B, 0x25] + bytes(state) + [0xB8] + bytes(0x77) + [0x31, 0xD2] + [0x8F, 0x05]
        + bytes(resumePoint)
        + [0x8F, 0x05] + bytes(state + 4) + [0x8F, 0x05] + bytes(state) + [
          0x5F, 0x5E, 0x5B, 0x5D, 0x9D, 0xC3,
        ])
    for page in [
      UserStacks.top(thread: thread) - 4096, UserStacks.bottom(thread: thread),
      UserStacks.bottom(thread: thread) + 4096,
      0xB005_7000,
    ] {
      machine.place(page, words: Array(repeating: 0, count: 1024))
    }
    machine.place(callerStack, words: [0xEB0, 0x4010_1234, 2, 0x5E1E, 100, 200, 300])
    var addresses: UserBoundStubAddresses? = nil
    let target = target()
    machine.place(code: stub) { addresses = CallStubs.writeUserBoundStub(into: &$0, target: target) }
    return (machine, addresses!)
  }

  /// Runs the stub from the caller's `sysenter` (interrupts off) until `stop`.
  func call(
    _ machine: Emulation, stop: UInt32, userStack: UInt32? = nil, read: [(UInt32, Int)] = []
  ) throws -> Emulation.Answer {
    let registers = callerRegisters.merging([
      "eax": UserCallCode.boundBase + 3, "ebx": callerWords, "ecx": userStack ?? callerStack,
      "edx": userResume,
      "eflags": 0x2,
    ]) { $1 }
    return try machine.run(
      eip: stub, esp: entryStack, cr3: callerDirectory, registers: registers, stop: stop, read: read)
  }

  @Test func aCallEntersTheCalleeWithItsFrameAndReturnsToTheCallerWithEverythingUndone() throws {
    let (machine, addresses) = machine()
    let frame = UserStacks.top(thread: thread) - UserStacks.frameBytes(arguments: 5)
    let entered = try call(
      machine, stop: addresses.enter,
      read: [
        (frame, 6), (calleePointers + 4 * thread, 1), (callerPointers + 4 * thread, 1), (chain.depth, 1),
        (chain.records + 8, 2), (calleeWords + UInt32(4 * ServerWords.threadsInside), 1), (spaceCount, 1),
        (state, 5), (taskStackPointer, 1), (entryStack - 52, 13),
      ])
    #expect(entered.error == nil, "\(entered.error ?? "")")
    let reads = entered.reads
    #expect(
      reads[0] == [trampoline, 0xC0C0, 0x5E1E, 100, 200, 300],
      "the frame: trampoline, context, selector, words")
    #expect(
      entered.registers["ecx"] == frame && entered.registers["edx"] == dispatch, "sysexit's stack and entry")
    #expect(
      entered.registers["esi"] == 0 && entered.registers["edi"] == 0 && entered.registers["ebp"] == 0,
      "no caller register reaches the callee")
    #expect(reads[1] == [frame] && reads[2] == [callerStack & ~15], "both spaces' stack pointers recorded")
    #expect(reads[3] == [2] && reads[4] == [addresses.continuation, object], "the record names the object")
    #expect(reads[5] == [1] && reads[6] == [3], "the thread counted in the server and its space")
    let kernelStack = entered.registers["esp"]!
    #expect(reads[7] == [kernelStack, 0, taskStackPointer, calleeDirectory, calleeWords])
    #expect(reads[8] == [kernelStack] && entered.registers["cr3"] == calleeDirectory)
    // arch_upcall's frame, then the pointers' old values, the caller's stack and resume address.
    #expect(kernelStack == entryStack - 52)
    var kept = reads[9]
    #expect(kept[7] & 0x200 == 0, "the frame's flags: interrupts off when it returns")
    kept[5] = 0
    kept[7] = 0
    #expect(
      kept == [
        enclosingResume, 0, entryStack, 0xD1D1, 0x5151, 0, 0xB9B9, 0, addresses.continuation, 0, 0xB005_F000,
        callerStack, userResume,
      ])

    // The way back, as the return trampoline's sysenter takes it.
    let both = try roundTrip(machine, addresses: addresses)
    #expect(both.error == nil, "\(both.error ?? "")")
    #expect(both.registers["eax"] == 0x77 && both.registers["ebx"] == 0, "the result, status 0")
    #expect(both.registers["ecx"] == callerStack && both.registers["edx"] == userResume, "back to the thunk")
    #expect(
      both.registers["esi"] == 0x5151 && both.registers["edi"] == 0xD1D1 && both.registers["ebp"] == 0xB9B9,
      "the caller's registers")
    #expect(both.registers["cr3"] == callerDirectory)
    #expect(both.reads[0] == [0] && both.reads[1] == [0xB005_F000], "the stack pointers as before")
    #expect(
      both.reads[2] == [1] && both.reads[3] == [0] && both.reads[4] == [2], "record popped, counts undone")
    #expect(both.reads[5] == [entryStack, 0, taskStackPointer, callerDirectory, callerWords])
    #expect(
      both.reads[6] == [enclosingResume] && both.reads[7] == [0], "resume frame back, supervisor not woken")
  }

  /// Runs the call to the `sysexit` into the callee, then (in the same machine: the three
  /// register clears before the stub's `sti` are replaced by a jump to the fake return) the
  /// way back to the caller's `sysexit`.
  func roundTrip(_ base: Emulation, addresses: UserBoundStubAddresses, failLater: Bool = false) throws
    -> Emulation.Answer
  {
    var machine = base
    // At the register clears before `enter`, jump to the fake return instead of entering
    // user mode.
    let clears = addresses.enter - 6
    machine.place(clears, bytes: [0xE9] + bytes(fakeReturn &- (clears &+ 5)) + [0x90])
    if failLater {
      // The callee fails while the thread is inside: its failed word set by the fake return.
      machine.place(
        fakeReturn - 0x10,
        bytes: [0xC7, 0x05] + bytes(calleeWords + UInt32(4 * ServerWords.failed)) + bytes(1) + [0xE9]
          + bytes(fakeReturn &- (fakeReturn - 0x10 + 15)))
      machine.place(clears, bytes: [0xE9] + bytes((fakeReturn - 0x10) &- (clears &+ 5)) + [0x90])
    }
    return try call(
      machine, stop: addresses.leave,
      read: [
        (calleePointers + 4 * thread, 1), (callerPointers + 4 * thread, 1), (chain.depth, 1),
        (calleeWords + UInt32(4 * ServerWords.threadsInside), 1), (spaceCount, 1), (state, 5),
        (resumePoint, 1),
        (failedSeen, 1),
      ])
  }

  @Test func aCalleeThatFailedDuringTheCallWakesTheSupervisorAndTheCallerGetsTheResult() throws {
    let (machine, addresses) = machine()
    let answer = try roundTrip(machine, addresses: addresses, failLater: true)
    #expect(answer.error == nil, "\(answer.error ?? "")")
    #expect(answer.reads[7] == [1], "failed-after-upcall called")
    #expect(answer.reads[2] == [1] && answer.reads[3] == [0], "record popped, count undone")
    #expect(answer.registers["esi"] == 0x5151 && answer.registers["ebp"] == 0xB9B9)
  }

  /// The refusals return to the caller's thunk at once: nothing recorded.
  func expectRefused(_ answer: Emulation.Answer, status: UInt32, userStack: UInt32, _ comment: Comment) {
    #expect(answer.error == nil, "\(answer.error ?? "")")
    #expect(answer.registers["eax"] == 0 && answer.registers["ebx"] == status, comment)
    #expect(answer.registers["ecx"] == userStack && answer.registers["edx"] == userResume, comment)
    #expect(answer.reads.first == [1], "no record: \(comment)")
  }

  @Test func aUserStackOutsideTheThreadsSlotOrTooHighForTheWordsIsRefused() throws {
    let (machine, addresses) = machine()
    let refusal = addresses.offStack + 9  // its sti
    let bottom = UserStacks.bottom(thread: thread)
    let highest = UserStacks.top(thread: thread) - (16 + 4 * 3)
    for (stack, accepted) in [
      (bottom, true), (bottom - 4, false), (highest, true), (highest + 4, false), (0xC000_0000, false),
      (UserStacks.top(thread: thread + 1) - 0x200, false), (0, false),
    ] {
      let answer = try call(
        machine, stop: accepted ? addresses.enter : refusal, userStack: stack, read: [(chain.depth, 1)])
      if accepted {
        #expect(answer.error == nil && answer.reads[0] == [2], "stack \(stack) accepted")
      } else {
        expectRefused(answer, status: CallABI.statusBadBlock, userStack: stack, "stack \(stack)")
      }
    }
  }

  @Test func aFullChainIsRefusedAndAFailedCalleeOrADeepStackTakesTheGeneralPath() throws {
    let (full, addresses) = machine(depth: CallABI.chainCapacity)
    let refused = try call(full, stop: addresses.overflow + 17, read: [(chain.depth, 1)])
    #expect(refused.registers["edx"] == userResume && refused.registers["ecx"] == callerStack)
    #expect(refused.error == nil && refused.registers["ebx"] == CallABI.statusOutOfResources)
    #expect(refused.reads[0] == [CallABI.chainCapacity], "nothing pushed")

    let (failed, _) = machine(failed: 1)
    let general = try call(
      failed, stop: self.general, read: [(chain.depth, 1), (calleePointers + 4 * thread, 1)])
    #expect(general.error == nil, "\(general.error ?? "")")
    #expect(
      general.registers["eax"] == 3 && general.registers["ecx"] == callerStack, "tessera_call3 from here on")
    #expect(
      general.registers["edx"] == userResume && general.registers["esp"] == entryStack, "nothing left pushed")
    #expect(general.reads[0] == [1] && general.reads[1] == [0], "nothing recorded")

    // The callee's stack: as UserStacks.claim says, to the byte.
    let frameBytes = UserStacks.frameBytes(arguments: 5)
    let lowest = UserStacks.bottom(thread: thread) + UserStacks.slack
    for current in [lowest + frameBytes, lowest + frameBytes - 16, lowest + frameBytes + 16, 0xB005_8000] {
      let claimed = UserStacks.claim(bytes: frameBytes, current: current, thread: thread)
      let (deep, deepAddresses) = machine(calleeCurrent: current)
      let answer = try call(
        deep, stop: claimed == nil ? self.general : deepAddresses.enter,
        read: [(calleePointers + 4 * thread, 1)])
      #expect(answer.error == nil, "current \(current): \(answer.error ?? "")")
      #expect(answer.reads[0] == [claimed ?? current], "current \(current): claimed as the kernel claims")
      if claimed == nil {
        #expect(
          answer.registers["edx"] == userResume && answer.registers["esp"] == entryStack,
          "nothing left pushed")
      }
    }
  }

  @Test func theCallersWordsAreReadOnlyInsideTheFixedUpRange() throws {
    // The words on a page that is not there: the read faults inside the range whose
    // faults the kernel sends to the fixup, before anything changed.
    let (base, addresses) = machine()
    var machine = Emulation()
    for area in base.areas
    where area.address != UserStacks.top(thread: thread) - 4096 && area.address != callerStack {
      machine.areas.append(area)
    }
    let stack = UserStacks.bottom(thread: thread) + 4096 - 20  // words on the next page, unmapped
    machine.areas.removeAll { $0.address == UserStacks.bottom(thread: thread) + 4096 }
    let answer = try call(machine, stop: addresses.enter, userStack: stack, read: [(chain.depth, 1)])
    let eip = answer.registers["eip"]!
    #expect(answer.error != nil, "the read faults")
    #expect(
      eip >= addresses.argumentReads.start && eip < addresses.argumentReads.end, "inside the fixed-up range")
    #expect(answer.reads[0] == [1], "no record yet")
    // The fixup itself refuses, as the kernel resumes it with the registers of the fault.
    var resumed = base
    resumed.place(entryStack - 4, words: [userResume])  // the stub's first push
    let refusal = try resumed.run(
      eip: addresses.argumentReads.fixup, esp: answer.registers["esp"]!,
      registers: ["ecx": stack, "edx": 0, "eflags": 0x2],
      stop: addresses.argumentReads.fixup + 17, read: [(chain.depth, 1)])
    expectRefused(refusal, status: CallABI.statusInvalidHandle, userStack: stack, "a faulting read")
  }

  @Test func aFrameTheKernelCannotBackUndoesTheCallAndReturnsOutOfResources() throws {
    // The callee's stack page is not there (and, as when frames are short, the kernel
    // cannot back it): the write faults inside the fixed-up range, after the record, the
    // stack pointers and CR3 changed; the fixup undoes them through the way back.
    let (base, addresses) = machine()
    var machine = Emulation()
    let top = UserStacks.top(thread: thread)
    machine.areas = base.areas.filter { $0.address < top - 4096 || $0.address >= top }
    let stack = UserStacks.bottom(thread: thread) + 0x100  // the caller's words, mapped
    machine.place(stack, words: [0xEB0, 0x4010_1234, 2, 0x5E1E, 100, 200, 300])
    // What the call changed before the fault, carried into the run from the fixup.
    let changed: [(UInt32, Int)] = [
      (chain.depth, 3), (calleePointers, 8), (callerPointers, 8), (state, 6), (entryStack - 64, 16),
    ]
    let faulted = try call(machine, stop: addresses.enter, userStack: stack, read: changed)
    let eip = faulted.registers["eip"]!
    #expect(
      faulted.error != nil && addresses.frameWrites.contains(eip), "the frame write faults in the range")
    #expect(faulted.reads[0][0] == 2 && faulted.registers["cr3"] == calleeDirectory, "the call was under way")
    for (area, words) in zip(changed, faulted.reads) { machine.place(area.0, words: words) }
    var registers = faulted.registers
    registers["eip"] = nil
    registers["esp"] = nil
    registers["cr3"] = nil
    let undone = try machine.run(
      eip: addresses.frameWrites.fixup, esp: faulted.registers["esp"]!, cr3: calleeDirectory,
      registers: registers, stop: addresses.leave,
      read: [
        (calleePointers + 4 * thread, 1), (callerPointers + 4 * thread, 1), (chain.depth, 1),
        (calleeWords + UInt32(4 * ServerWords.threadsInside), 1), (spaceCount, 1), (state, 5),
      ])
    #expect(undone.error == nil, "\(undone.error ?? "")")
    #expect(undone.registers["eax"] == 0 && undone.registers["ebx"] == CallABI.statusOutOfResources)
    #expect(
      undone.registers["ecx"] == stack && undone.registers["edx"] == userResume,
      "back to the caller's stack and resume address")
    #expect(undone.reads[0] == [0] && undone.reads[1] == [0xB005_F000] && undone.reads[2] == [1])
    #expect(undone.reads[3] == [0] && undone.reads[4] == [2], "counted out again")
    #expect(undone.reads[5] == [entryStack, 9, taskStackPointer, callerDirectory, callerWords])
    #expect(undone.registers["cr3"] == callerDirectory)
  }

  @Test func theRedirectAndTheDirectStubGoWhereTheySay() throws {
    var machine = Emulation()
    machine.place(general, bytes: [0xF4])
    machine.place(entryStack - 0x100, words: Array(repeating: 0, count: 0x40))
    machine.place(code: stub) { CallStubs.writeUserBoundRedirect(into: &$0, words: 4, general: general) }
    let redirected = try machine.run(
      eip: stub, esp: entryStack, registers: ["eflags": 0x2], stop: general, read: [])
    #expect(redirected.error == nil && redirected.registers["eax"] == 4)

    let boundStub: UInt32 = 0xAB00
    machine.place(code: stub) {
      CallStubs.writeUserDirectStub(
        into: &$0, callerWords: callerWords, boundStub: boundStub, words: 2, direct: general)
    }
    let direct = try machine.run(
      eip: stub, esp: entryStack,
      registers: ["ecx": 0x1C, "edx": 0x1D, "esi": 0x15, "edi": 0x1D1, "ebp": 0x1B, "eflags": 0x2],
      stop: general,
      read: [(entryStack - 20, 5)])
    #expect(direct.error == nil)
    #expect(
      direct.reads[0] == [0x1C, 0x1D, 0x15, 0x1D1, 0x1B], "the call entry's frame: ecx, edx, esi, edi, ebp")
    #expect(
      direct.registers["esi"] == callerWords && direct.registers["ebp"] == boundStub
        && direct.registers["eax"] == 2)
  }

  @Test func theLargestStubFitsItsRoomAndTheRedirectCoversWholeInstructions() {
    let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
    defer { memory.deallocate() }
    var code = CodeBuffer(memory: memory, base: 0xFFFF_F000)
    _ = CallStubs.writeUserBoundStub(into: &code, target: target(words: InterfaceDescriptor.maximumCallWords))
    #expect(code.count <= CallStubs.userBoundStubSize)
    var direct = CodeBuffer(memory: memory, base: 0x1000)
    CallStubs.writeUserDirectStub(into: &direct, callerWords: 1, boundStub: 2, words: 8, direct: 3)
    #expect(direct.count <= CallStubs.userBoundStubSize && direct.count >= CallStubs.userBoundRedirectSize)
  }
}

/// The bound stub of a kernel-mode server's slot bound to a thread-safe user-mode server
/// (`writeKernelToUserBoundStub`), run as UserBoundStubExecutionTests run theirs: the call
/// from the kernel caller's `call` to the `sysexit` into the callee, and back from the
/// upcall frame to the caller's return address.
@Suite struct KernelToUserBoundStubExecutionTests {
  let user = UserBoundStubExecutionTests()
  let stop: UInt32 = 0xF000
  let stackTop: UInt32 = 0x8000
  /// The method's entry word (the vector), holding the fake upcall stub's address.
  let entry: UInt32 = 0x9100
  /// The fake upcall stub (the general path): returns 0xDEAD with the context it got.
  let upcallStub: UInt32 = 0x9000
  let runningBefore: UInt32 = 0x9999
  let kernelRegisters: [String: UInt32] = ["ebx": 0xEB, "esi": 0xE51, "edi": 0xED1, "ebp": 0xEB9]

  func machine(calleeCurrent: UInt32 = 0, depth: UInt32 = 1, failed: UInt32 = 0) -> (
    Emulation, (window: CountWindow, enter: UInt32, continuation: UInt32, frameWrites: FaultFixup)
  ) {
    var (machine, _) = user.machine(calleeCurrent: calleeCurrent, depth: depth, failed: failed)
    // The kernel caller runs in some server: its running server and ticks are kept.
    machine.place(
      user.state, words: [user.entryStack, 9, user.taskStackPointer, user.callerDirectory, runningBefore])
    machine.place(stackTop - 0x100, words: Array(repeating: 0, count: 64))
    machine.place(stackTop - 24, words: [stop, 2, 0x5E1E, 100, 200, 300])
    machine.place(stop, bytes: [0xF4])
    machine.place(entry, words: [upcallStub])
    machine.place(
      upcallStub,
      bytes: [0x8B, 0x44, 0x24, 0x04, 0xA3] + user.bytes(0x6044) + [0xB8, 0xAD, 0xDE, 0, 0, 0xC3])
    var addresses: (window: CountWindow, enter: UInt32, continuation: UInt32, frameWrites: FaultFixup)? = nil
    let kernel = user.target().kernel
    let callee = user.target().callee
    let entry = self.entry
    machine.place(code: user.stub) {
      addresses = CallStubs.writeKernelToUserBoundStub(
        into: &$0, kernel: kernel, callee: callee, entry: entry)
    }
    return (machine, addresses!)
  }

  func call(_ machine: Emulation, stop: UInt32, read: [(UInt32, Int)]) throws -> Emulation.Answer {
    try machine.run(
      eip: user.stub, esp: stackTop - 24, cr3: user.callerDirectory, registers: kernelRegisters, stop: stop,
      read: read)
  }

  @Test func aCallEntersTheCalleeAndReturnsToTheKernelCallerWithEverythingUndone() throws {
    let (machine, addresses) = machine()
    let thread = user.thread
    let frame = UserStacks.top(thread: thread) - UserStacks.frameBytes(arguments: 5)
    let entered = try call(
      machine, stop: addresses.enter,
      read: [
        (frame, 6), (user.calleePointers + 4 * thread, 1), (user.chain.depth, 1), (user.chain.records + 8, 2),
        (user.state, 5), (user.taskStackPointer, 1), (stackTop - 20 - 48, 12), (user.spaceCount, 1),
      ])
    #expect(entered.error == nil, "\(entered.error ?? "")")
    let reads = entered.reads
    #expect(reads[0] == [user.trampoline, 0xC0C0, 0x5E1E, 100, 200, 300], "the frame")
    #expect(entered.registers["ecx"] == frame && entered.registers["edx"] == user.dispatch)
    for register in ["eax", "ebx", "esi", "edi", "ebp"] {
      #expect(entered.registers[register] == 0, "no kernel value in \(register)")
    }
    #expect(reads[1] == [frame] && reads[2] == [2] && reads[3] == [stop, user.object])
    let kernelStack = entered.registers["esp"]!
    #expect(kernelStack == stackTop - 20 - 48)
    #expect(reads[4] == [kernelStack, 0, user.taskStackPointer, user.calleeDirectory, user.calleeWords])
    #expect(reads[5] == [kernelStack] && entered.registers["cr3"] == user.calleeDirectory && reads[7] == [3])
    var kept = reads[6]
    #expect(kept[7] & 0x200 != 0, "the frame's flags: interrupts on, as the caller had them")
    kept[7] = 0
    #expect(
      kept == [
        user.enclosingResume, 9, user.entryStack, 0xED1, 0xE51, 0xEB, 0xEB9, 0, addresses.continuation,
        runningBefore, user.callerDirectory, 0,
      ])

    var both = machine
    let clears = addresses.enter - 6
    both.place(clears, bytes: [0xE9] + user.bytes(user.fakeReturn &- (clears &+ 5)) + [0x90])
    let back = try call(
      both, stop: stop,
      read: [
        (user.calleePointers + 4 * thread, 1), (user.chain.depth, 1), (user.spaceCount, 1), (user.state, 5),
        (user.calleeWords + UInt32(4 * ServerWords.threadsInside), 1),
      ])
    #expect(back.error == nil, "\(back.error ?? "")")
    #expect(
      back.registers["eax"] == 0x77 && back.registers["edx"] == 0 && back.registers["esp"] == stackTop - 20)
    for (register, value) in kernelRegisters {
      #expect(back.registers[register] == value, "\(register) kept")
    }
    #expect(back.reads[0] == [0] && back.reads[1] == [1] && back.reads[2] == [2] && back.reads[4] == [0])
    #expect(
      back.reads[3] == [user.entryStack, 9, user.taskStackPointer, user.callerDirectory, runningBefore])
    #expect(back.registers["cr3"] == user.callerDirectory)
  }

  @Test func aFailedCalleeOrADeepStackTakesTheMethodsEntryAndAFullChainIsRefused() throws {
    let (failed, _) = machine(failed: 1)
    let general = try call(failed, stop: stop, read: [(0x6044, 1), (user.chain.depth, 1)])
    #expect(general.error == nil && general.registers["eax"] == 0xDEAD && general.registers["edx"] == 0)
    #expect(
      general.reads[0] == [0xC0C0] && general.reads[1] == [1], "the entry got the context; record popped")

    let frameBytes = UserStacks.frameBytes(arguments: 5)
    let lowest = UserStacks.bottom(thread: user.thread) + UserStacks.slack
    for current in [lowest + frameBytes, lowest + frameBytes - 16, 0xB005_8000] {
      let claimed = UserStacks.claim(bytes: frameBytes, current: current, thread: user.thread)
      let (deep, addresses) = machine(calleeCurrent: current)
      let answer = try call(
        deep, stop: claimed == nil ? stop : addresses.enter,
        read: [(user.calleePointers + 4 * user.thread, 1)])
      #expect(answer.error == nil, "current \(current): \(answer.error ?? "")")
      #expect(answer.reads[0] == [claimed ?? current], "current \(current): claimed as the kernel claims")
      if claimed == nil { #expect(answer.registers["eax"] == 0xDEAD, "the upcall stub refuses it") }
    }

    let (full, _) = machine(depth: CallABI.chainCapacity)
    let refused = try call(full, stop: stop, read: [(user.chain.depth, 1)])
    #expect(refused.error == nil && refused.registers["edx"] == CallABI.statusOutOfResources)
    #expect(refused.reads[0] == [CallABI.chainCapacity])
  }

  @Test func aFrameTheKernelCannotBackUndoesTheCallAndReturnsOutOfResources() throws {
    let (base, addresses) = machine()
    var machine = Emulation()
    let top = UserStacks.top(thread: user.thread)
    machine.areas = base.areas.filter { $0.address < top - 4096 || $0.address >= top }
    let changed: [(UInt32, Int)] = [
      (user.chain.depth, 1 + 2 * 4), (user.calleePointers, 8), (user.state, 6), (stackTop - 0x40, 16),
    ]
    let faulted = try call(machine, stop: addresses.enter, read: changed)
    #expect(faulted.error != nil && addresses.frameWrites.contains(faulted.registers["eip"]!))
    for (area, words) in zip(changed, faulted.reads) { machine.place(area.0, words: words) }
    var registers = faulted.registers
    for name in ["eip", "esp", "cr3"] { registers[name] = nil }
    let undone = try machine.run(
      eip: addresses.frameWrites.fixup, esp: faulted.registers["esp"]!, cr3: user.calleeDirectory,
      registers: registers, stop: stop,
      read: [
        (user.calleePointers + 4 * user.thread, 1), (user.chain.depth, 1), (user.spaceCount, 1),
        (user.state, 5),
        (user.calleeWords + UInt32(4 * ServerWords.threadsInside), 1),
      ])
    #expect(undone.error == nil, "\(undone.error ?? "")")
    #expect(undone.registers["eax"] == 0 && undone.registers["edx"] == CallABI.statusOutOfResources)
    #expect(undone.registers["esp"] == stackTop - 20 && undone.registers["cr3"] == user.callerDirectory)
    for (register, value) in kernelRegisters {
      #expect(undone.registers[register] == value, "\(register) kept")
    }
    #expect(
      undone.reads[0] == [0] && undone.reads[1] == [1] && undone.reads[2] == [2] && undone.reads[4] == [0])
    #expect(
      undone.reads[3] == [user.entryStack, 9, user.taskStackPointer, user.callerDirectory, runningBefore])
  }

  @Test func itsWindowEndsAtTheRecordsCountAndItFitsABoundStubsRoom() {
    let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
    defer { memory.deallocate() }
    var code = CodeBuffer(memory: memory, base: 0x1000)
    var callee = user.target().callee
    callee.callWords = InterfaceDescriptor.maximumCallWords
    let (window, _, _, _) = CallStubs.writeKernelToUserBoundStub(
      into: &code, kernel: user.target().kernel, callee: callee, entry: entry)
    #expect(code.count <= CallStubs.boundStubSize)
    #expect(window.start == 0x1000)
    let commit = Int(window.commit - 0x1000)
    #expect(Array(memory[commit..<commit + 6]) == [0xFF, 0x05] + user.bytes(user.chain.depth), "inc [depth]")
  }
}
