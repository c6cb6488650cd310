// Hostile: a user-mode server that attacks the kernel through every call it can make,
// with the words most likely to break it (0, 2^31 - 1, 2^31, 2^32 - 1, lengths past any
// end), then fuzzes raw kernel calls.
//
// Contract: `run()` prints one `@@ATTACK name=... result=... ok=true|false` line per
// attack (ok: refused or harmless as the kernel's contract says), then `@@FUZZ seed=...
// calls=... refused=... accepted=...` for the fuzzer, and returns the number of attacks
// that were not ok. A kernel panic, or this server being stopped, fails the test
// (Tests/SystemTests/HostileSystemTests.swift). The fuzzer's seed comes from the
// time-stamp counter and is printed; set `replaySeed` to run one seed again, and
// `fuzzCalls` for a longer run.

import KernelCore
import ServerRuntime
import TesseraABI

/// A seed to replay (0: take a new one from the time-stamp counter).
let replaySeed: UInt64 = 0
/// Raw kernel calls the fuzzer makes per run.
let fuzzCalls = 100_000

func report(_ message: KernelMessage) {
  message.withBytes { bytes in _ = try? Required.console.write(text: UnsafeRawBufferPointer(bytes)) }
}

/// xorshift64*: small, seedable, good enough to pick words.
struct Random {
  var state: UInt64
  mutating func next() -> UInt32 {
    state ^= state >> 12
    state ^= state << 25
    state ^= state >> 27
    return UInt32(truncatingIfNeeded: (state &* 0x2545_F491_4F6C_DD1D) >> 32)
  }
  mutating func below(_ bound: UInt32) -> UInt32 { next() % bound }
}

/// The work of a thread the attacks spawn: nothing.
final class Idle: RunnableImplementation {
  func run() {}
}

/// Nests marshaled calls into itself (each copies a 1 KiB block): 63 levels would take
/// more kernel stack than a thread has, so the kernel must refuse a level first.
final class Nesting: NesterImplementation {
  var myself = Nester(handle: 0)
  var refusal: UInt32 = 0

  func nestWords(depth: UInt) -> UInt {
    guard depth > 0 else { return 0 }
    do throws(CallError) {
      return 1 + (try myself.nestWords(depth: depth - 1))
    } catch {
      if refusal == 0 { refusal = error.status }
      return 0
    }
  }

  func nest(depth: UInt, data: UnsafeRawBufferPointer) -> UInt {
    guard depth > 0 else { return 0 }
    do throws(CallError) {
      return 1 + (try myself.nest(depth: depth - 1, data: data))
    } catch {
      if refusal == 0 { refusal = error.status }
      return 0
    }
  }
}

/// The semaphore race's second thread (higher priority than the signalling one): swaps
/// the shared semaphore for a new one and releases the old one's last reference, often
/// while the other thread is inside its `signal`.
final class SemaphoreSwapper: RunnableImplementation {
  var handle: UInt32
  var swaps = 0
  var done = false

  init(handle: UInt32) { self.handle = handle }

  func run() {
    let end = ((try? Required.clock.uptimeMilliseconds()) ?? 0) + 300
    while ((try? Required.clock.uptimeMilliseconds()) ?? end) < end {
      guard let fresh = try? Required.sync.makeSemaphore(count: 0) else { break }
      let old = handle
      handle = fresh.handle
      _ = tessera_release(old)
      swaps += 1
      try? Required.clock.sleep(milliseconds: 1)
    }
    done = true
  }
}

/// Nests words-only calls on the thread that runs it.
final class WordNester: RunnableImplementation {
  let nester: Nester
  var levels: UInt = 0
  var done = false

  init(_ nester: Nester) { self.nester = nester }

  func run() {
    levels = (try? nester.nestWords(depth: 70)) ?? 0
    done = true
  }
}

/// The work of the threads that fill the thread table: alive for 50 ms.
final class Sleeper: RunnableImplementation {
  func run() { try? Required.clock.sleep(milliseconds: 50) }
}

/// The gate race's second thread (of a higher priority than the calling one): for
/// `milliseconds`, releases the shared handle, sleeps a tick, exports a new object (which
/// gets the same handle back) and sleeps a tick. Each wake-up preempts the calling thread
/// wherever it is, often inside a gate, and half the time the entry it was reading is
/// then free.
final class Releaser: RunnableImplementation {
  var handle: UInt32
  let milliseconds: UInt
  var rounds = 0
  var done = false

  init(handle: UInt32, milliseconds: UInt) {
    self.handle = handle
    self.milliseconds = milliseconds
  }

  func run() {
    let end = ((try? Required.clock.uptimeMilliseconds()) ?? 0) + milliseconds
    while ((try? Required.clock.uptimeMilliseconds()) ?? end) < end {
      _ = tessera_release(handle)
      try? Required.clock.sleep(milliseconds: 1)
      handle = Runnable.export(Idle())?.handle ?? 0
      try? Required.clock.sleep(milliseconds: 1)
      rounds += 1
    }
    done = true
  }
}

/// A kernel call with an arbitrary call code: the user thunks' sequence
/// (Kernel/Arch/i686/CodeGeneration/UserStubs.swift) with the code patched in, run from
/// the heap. Arguments are read by the kernel from the user stack like a thunk's.
final class RawCall {
  private let code: UnsafeMutableRawPointer
  private let codeOffset: Int
  typealias Function =
    @convention(c) (UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32, UInt32) -> UInt64

  /// With `flags`, those EFLAGS bits are set just before the `sysenter` (the direction
  /// flag, the trap flag: what the kernel must not inherit).
  init(flags: UInt32 = 0) {
    func bytes(_ word: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) } }
    var program: [UInt8] = [0x53, 0x89, 0xE1, 0xBA]  // push ebx; mov ecx, esp; mov edx, back
    code = UnsafeMutableRawPointer.allocate(byteCount: 48, alignment: 16)
    let backField = program.count
    program += [0, 0, 0, 0]
    codeOffset = program.count + 1
    program += [0xB8, 0, 0, 0, 0]  // mov eax, code
    if flags != 0 {
      program += [0x9C, 0x81, 0x0C, 0x24] + bytes(flags) + [0x9D]  // pushfd; or [esp], flags; popfd
    }
    program += [0x0F, 0x34]  // sysenter
    let back = UInt32(UInt(bitPattern: code)) + UInt32(program.count)
    program.replaceSubrange(backField..<backField + 4, with: bytes(back))
    program += [0x89, 0xDA, 0x5B, 0xC3]  // back: mov edx, ebx; pop ebx; ret
    code.copyMemory(from: program, byteCount: program.count)
  }

  /// Calls the kernel with `number` and ten argument words; (result, status).
  func call(_ number: UInt32, _ words: [UInt32]) -> (UInt32, UInt32) {
    code.storeBytes(of: number, toByteOffset: codeOffset, as: UInt32.self)
    let function = unsafeBitCast(code, to: Function.self)
    let result = function(
      words[0], words[1], words[2], words[3], words[4], words[5], words[6], words[7], words[8], words[9])
    return (UInt32(truncatingIfNeeded: result), UInt32(truncatingIfNeeded: result >> 32))
  }
}

/// A bound call (code `UserCallCode.boundBase + k`) entered with a user stack of the
/// caller's choosing: the user thunks' sequence with ECX patched, the real stack pointer
/// kept aside and restored when the kernel returns (to the forged stack).
final class ForgedStackCall {
  private let code: UnsafeMutableRawPointer
  private let saved: UnsafeMutablePointer<UInt32>
  private let stackOffset: Int
  private let codeOffset: Int

  init() {
    saved = .allocate(capacity: 1)
    code = UnsafeMutableRawPointer.allocate(byteCount: 48, alignment: 16)
    func bytes(_ word: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: word >> (8 * $0)) } }
    let savedAddress = UInt32(UInt(bitPattern: saved))
    var program: [UInt8] = [0x53, 0x89, 0x25] + bytes(savedAddress)  // push ebx; mov [saved], esp
    stackOffset = program.count + 1
    program += [0xB9, 0, 0, 0, 0]  // mov ecx, stack
    let backField = program.count + 1
    program += [0xBA, 0, 0, 0, 0]  // mov edx, back
    codeOffset = program.count + 1
    program += [0xB8, 0, 0, 0, 0, 0x0F, 0x34]  // mov eax, code; sysenter
    let back = UInt32(UInt(bitPattern: code)) + UInt32(program.count)
    program.replaceSubrange(backField..<backField + 4, with: bytes(back))
    program += [0x8B, 0x25] + bytes(savedAddress)  // back: mov esp, [saved]
    program += [0x89, 0xDA, 0x5B, 0xC3]  // mov edx, ebx; pop ebx; ret
    precondition(program.count <= 48)
    code.copyMemory(from: program, byteCount: program.count)
  }

  /// Makes bound call `code` with ECX = `stack`; its status.
  func call(_ callCode: UInt32, stack: UInt32) -> UInt32 {
    code.storeBytes(of: stack, toByteOffset: stackOffset, as: UInt32.self)
    code.storeBytes(of: callCode, toByteOffset: codeOffset, as: UInt32.self)
    let function = unsafeBitCast(code, to: (@convention(c) () -> UInt64).self)
    return UInt32(truncatingIfNeeded: function() >> 32)
  }
}

final class Attacker: ProgramImplementation {
  var failures = 0

  func attack(_ name: StaticString, _ result: UInt, ok: Bool) {
    if !ok { failures += 1 }
    report("@@ATTACK name=\(name) result=\(result) ok=\(ok)")
  }

  func status(_ body: () throws(CallError) -> UInt) -> UInt {
    do throws(CallError) { return try body() } catch { return 0xE000_0000 | UInt(error.status) }
  }

  func run() -> UInt {
    let extremes: [UInt] = [0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0xFFFF_F000]
    // The export call's interface index comes straight from the server.
    for index in extremes + [200] {
      let handle = tessera_export(UInt32(truncatingIfNeeded: index), UnsafeMutableRawPointer(bitPattern: 16))
      attack("export-index", UInt(handle), ok: handle == 0)
    }
    // Memory requests too large to be pages of one object.
    for bytes in extremes + [0, 4 << 20 + 1] {
      let memory = status { () throws(CallError) in
        UInt(try Required.memory.allocate(bytes: bytes)?.handle ?? 0)
      }
      attack("allocate-bytes", memory, ok: memory == 0)
    }
    let mapped = status { () throws(CallError) in
      try Required.memory.mapPager(pager: Pager(handle: 0x8000_0000), bytes: 0xFFFF_FFFF)
    }
    attack("map-pager-bytes", mapped, ok: mapped == 0xE000_0000 | UInt(CallError.invalidHandle.status))
    // Priorities above its quota's highest (3 here; 2 by default): refused.
    let work = Runnable.export(Idle())!
    for priority in extremes {
      let thread = status { () throws(CallError) in try Required.threads.spawn(work: work, priority: priority)
      }
      attack("spawn-priority", thread, ok: thread == 0)
    }
    quotas(work)
    // 300 threads at once (each alive for 50 ms): the kernel's thread table fills and
    // further spawns are refused with 0; once they have ended, threads can be had again,
    // and their kernel stacks, records and user stack pages all come back (the group's
    // heap and frame report shows it).
    var started = 0
    let framesBefore = (try? Required.memory.freePages()) ?? 0
    let sleeper = Runnable.export(Sleeper())!
    for _ in 0..<300 {
      if let thread = try? Required.threads.spawn(work: sleeper, priority: 1), thread != 0 { started += 1 }
    }
    sleeper.release()
    try? Required.clock.sleep(milliseconds: 200)
    let again = (try? Required.threads.spawn(work: work, priority: 2)) ?? 0
    try? Required.clock.sleep(milliseconds: 10)
    // Their user stack pages in this space went back when they ended.
    let framesAfter = (try? Required.memory.freePages()) ?? 0
    report(
      "@@ATTACK spawned \(started) threads at once before the thread table was full; free frames \(framesBefore) before, \(framesAfter) after they ended"
    )
    attack(
      "spawn-many", UInt(started),
      ok: started > 200 && started < 300 && again != 0 && framesAfter + 16 >= framesBefore)
    work.release()
    // A semaphore's count at its maximum, signalled again, then taken.
    let semaphore = status { () throws(CallError) in
      UInt(try Required.sync.makeSemaphore(count: UInt.max).handle)
    }
    let signalled = status { () throws(CallError) in
      let made = Semaphore(handle: UInt32(truncatingIfNeeded: semaphore))
      try made.signal()
      try made.signal()
      try made.wait()
      _ = made.release()
      return 1
    }
    attack("semaphore-overflow", signalled, ok: semaphore != 0 && signalled == 1)
    // Handles nobody gave it, in Swift paths of the kernel.
    for reference in extremes {
      let rebound = status { () throws(CallError) in try Required.supervision.rebind(reference: reference) }
      attack("rebind-handle", rebound, ok: rebound == 0)
    }
    forgeBoundCallStacks()
    enterWithFlags()
    mapUntilTheTableIsFull()
    nestDeeply()
    gateRace()
    semaphoreRace()
    fuzz()
    report("@@ATTACK done failures=\(failures)")
    // Last, since it stops this server: an object around a garbage context, released, so
    // its destroy (a call the kernel makes into this server, on the server's worker
    // thread) faults while this thread sleeps; its next kernel call is then aborted, which
    // ends this run with serverUnavailable.
    let garbage = tessera_export(1, UnsafeMutableRawPointer(bitPattern: UInt(0xB563_88D3)))
    _ = tessera_release(garbage)
    try? Required.clock.sleep(milliseconds: 20)
    report("@@ATTACK not reached: the server failed in its destroy")
    return UInt(failures)
  }

  /// Its composition line limits its memory to 1 MiB and its timers to 4: pages past the
  /// limit (its heap counts against it too, so a few less than 256) and the 5th timer are
  /// refused, and once given back can be had again. Then its own heap is grown until the
  /// same limit refuses it (the heap's pages were not charged before: a server could take
  /// 8 MiB of frames whatever its quota said).
  func quotas(_ work: Runnable) {
    var pages: [Memory] = []
    pages.reserveCapacity(300)
    while pages.count < 1000, let page = try? Required.memory.allocate(bytes: 4096) { pages.append(page) }
    let held = pages.count
    for page in pages { _ = page.release() }
    let again = try? Required.memory.allocate(bytes: 4096)
    attack("memory-quota", UInt(held), ok: held >= 240 && held < 256 && again != nil)
    _ = again?.release()
    var blocks: [UnsafeMutableRawPointer] = []
    blocks.reserveCapacity(64)
    while blocks.count < 64 {
      var block: UnsafeMutableRawPointer? = nil
      guard tesseraUserPosixMemalign(&block, 16, 64 << 10) == 0, let block else { break }
      blocks.append(block)
    }
    let heapBlocks = blocks.count
    for block in blocks { tesseraUserFree(block) }
    var afterwards: UnsafeMutableRawPointer? = nil
    let regained = tesseraUserPosixMemalign(&afterwards, 16, 64 << 10) == 0
    if let afterwards { tesseraUserFree(afterwards) }
    attack("heap-quota", UInt(heapBlocks), ok: heapBlocks >= 12 && heapBlocks < 16 && regained)
    var timers: [UInt] = []
    for _ in 0..<6 {
      let timer = (try? Required.timers.after(milliseconds: 60_000, callback: work)) ?? 0
      if timer != 0 { timers.append(timer) }
    }
    let set = timers.count
    for timer in timers { _ = try? Required.timers.cancel(timer: timer) }
    let oneMore = (try? Required.timers.after(milliseconds: 60_000, callback: work)) ?? 0
    if oneMore != 0 { _ = try? Required.timers.cancel(timer: oneMore) }
    attack("timer-quota", UInt(set), ok: set == 4 && oneMore != 0)
  }

  /// One thread signals a semaphore in a loop while another releases its last reference
  /// and makes a new one: the kernel object must outlive every call inside it (before, a
  /// freed semaphore's memory could be written by a signal in flight).
  func semaphoreRace() {
    guard let first = try? Required.sync.makeSemaphore(count: 0) else {
      return attack("semaphore-race", 0, ok: false)
    }
    let swapper = SemaphoreSwapper(handle: first.handle)
    guard let work = Runnable.export(swapper),
      (try? Required.threads.spawn(work: work, priority: 3)) ?? 0 != 0
    else {
      return attack("semaphore-race", 0, ok: false)
    }
    let (signalled, refused, other) = callRepeatedly(
      { swapper.handle }, selector: Semaphore.digest &+ 1, until: { swapper.done })
    _ = tessera_release(swapper.handle)
    work.release()
    report(
      "@@ATTACK semaphore race: \(swapper.swaps) swaps, \(signalled) signals, \(refused) refused, \(other) other"
    )
    attack("semaphore-race", UInt(signalled), ok: other == 0 && signalled > 0 && swapper.swaps > 10)
  }

  /// 63 nested marshaled calls: refused (outOfResources) where the kernel stack would run
  /// out, instead of overflowing it.
  func nestDeeply() {
    let nesting = Nesting()
    guard let object = Nester.export(nesting) else { return attack("nest-deep", 0, ok: false) }
    nesting.myself = object
    let block = [UInt8](repeating: 7, count: 1024)
    let levels = block.withUnsafeBytes { bytes in (try? object.nest(depth: 63, data: bytes)) ?? 0 }
    // Words only, through the generated upcall stubs (bounded by the call chain's 64
    // records), on a spawned thread's 16 KiB kernel stack.
    let refusal = nesting.refusal
    nesting.refusal = 0
    let runner = WordNester(object)
    if let work = Runnable.export(runner), (try? Required.threads.spawn(work: work, priority: 2)) ?? 0 != 0 {
      for _ in 0..<100 where !runner.done { try? Required.clock.sleep(milliseconds: 10) }
      work.release()
    }
    report(
      "@@ATTACK nested \(runner.levels) words-only calls on a spawned thread before one was refused with status \(nesting.refusal)"
    )
    let wordsOK = runner.done && nesting.refusal == CallError.outOfResources.status
    nesting.refusal = refusal
    _ = object.release()
    report("@@ATTACK nested \(levels) marshaled calls before one was refused with status \(nesting.refusal)")
    attack(
      "nest-deep", levels,
      ok: nesting.refusal == CallError.outOfResources.status && levels > 8 && levels < 63 && wordsOK)
  }

  /// Calls method `selector` (no words) of the handle `target` gives until `done`, and
  /// counts how the calls ended: succeeded, refused as invalid handles, anything else.
  func callRepeatedly(_ target: () -> UInt32, selector: UInt32, until done: () -> Bool) -> (Int, Int, Int) {
    var counts = (0, 0, 0)
    while !done() {
      switch UInt32(truncatingIfNeeded: tessera_call0(target(), selector) >> 32) {
      case 0: counts.0 += 1
      case CallError.invalidHandle.status: counts.1 += 1
      default: counts.2 += 1
      }
    }
    return counts
  }

  /// One thread calls a handle in a loop while another releases it and exports a new
  /// object into the same handle: a gate that read the entry over several instructions
  /// with interrupts on could be switched out in between and read a freed entry (a method
  /// table at address 0, in ring 0). Calls must succeed or be refused, nothing else.
  func gateRace() {
    guard let first = Runnable.export(Idle()) else { return attack("gate-race", 0, ok: false) }
    let releaser = Releaser(handle: first.handle, milliseconds: 2000)
    guard let work = Runnable.export(releaser),
      (try? Required.threads.spawn(work: work, priority: 3)) ?? 0 != 0
    else { return attack("gate-race", 0, ok: false) }
    let (succeeded, refused, other) = callRepeatedly(
      { releaser.handle }, selector: Runnable.digest, until: { releaser.done })
    _ = tessera_release(releaser.handle)
    work.release()
    report(
      "@@ATTACK gate race: \(releaser.rounds) releases, \(succeeded) calls made, \(refused) refused, \(other) other"
    )
    attack("gate-race", UInt(succeeded + refused), ok: other == 0 && succeeded > 0 && releaser.rounds > 0)
  }

  /// Maps one page until a map is refused (the kernel's table of mapping references, or
  /// this space, is full): the refused map must give no address, since a mapping the
  /// kernel does not hold a reference for would outlive the frames it shows.
  func mapUntilTheTableIsFull() {
    guard let memory = try? Required.memory.allocate(bytes: 4096) else {
      return attack("map-table-full", 0, ok: false)
    }
    var addresses: [UInt] = []
    var refused: UInt = 1
    while addresses.count < 10_000 {
      let address = (try? Required.memory.map(memory: memory, writable: 1)) ?? 0
      if address == 0 {
        refused = 0
        break
      }
      addresses.append(address)
    }
    for address in addresses { _ = try? Required.memory.unmap(address: address) }
    _ = memory.release()
    report("@@ATTACK mapped \(addresses.count) times before a map was refused")
    attack("map-table-full", refused, ok: refused == 0 && addresses.count > 100)
  }

  /// Every bound-call code (its own, which call into another space or the kernel, and
  /// codes past them) with user stacks that are not its thread's: below its slot, in its
  /// guard, too close to its top for the words, another thread's, the kernel's. Each must
  /// be refused, and a real call must still work after them.
  func forgeBoundCallStacks() {
    let before = status { () throws(CallError) in UInt(try Required.target.compute(a: 1, b: 2, c: 3)) }
    let forged = ForgedStackCall()
    var here: UInt32 = 0
    let slot =
      withUnsafeMutablePointer(to: &here) { UInt32(UInt(bitPattern: $0)) } & ~(UserStacks.slotBytes - 1)
    let stacks: [UInt32] = [
      0, slot - 4, slot + 16, slot + UserStacks.slotBytes - 8, slot + UserStacks.slotBytes - 4,
      slot + UserStacks.slotBytes + 0x800, 0xC000_0000, 0xFFFF_FFF0, 0x0010_0000,
    ]
    var refused: UInt = 0
    var accepted: UInt = 0
    for index in 0..<UInt32(UserCallCode.boundCallCapacity + 8) {
      for stack in stacks {
        if forged.call(UserCallCode.boundBase + index, stack: stack) == 0 {
          accepted += 1
        } else {
          refused += 1
        }
      }
    }
    let after = status { () throws(CallError) in UInt(try Required.target.compute(a: 1, b: 2, c: 3)) }
    attack("bound-stack", refused, ok: accepted == 0 && before == 6 && after == 6)
  }

  /// Kernel calls entered with the direction flag set (the kernel's copies and fills would
  /// run backwards: allocate zeroes a page) and with the trap flag set (a single-step trap
  /// on the kernel's first instruction): each must work as without.
  func enterWithFlags() {
    let backwards = RawCall(flags: 0x400)
    let (memory, allocated) = backwards.call(1, allocateWords())  // tessera_call1
    let zeroed = allocated == 0 && memory != 0
    if memory != 0 { _ = tessera_release(memory) }
    let stepping = RawCall(flags: 0x100)
    let (_, null) = stepping.call(UserCallCode.null, [UInt32](repeating: 0, count: 10))
    let after = status { () throws(CallError) in UInt(try Required.target.compute(a: 1, b: 2, c: 3)) }
    attack("entry-flags", UInt(null), ok: zeroed && null == 0 && after == 6)
  }

  /// tessera_call1's words for `kernel.memory.allocate(bytes: 4096)`: handle, selector, bytes.
  private func allocateWords() -> [UInt32] {
    [2, MemoryService.digest, 4096] + [UInt32](repeating: 0, count: 7)
  }

  /// Raw kernel calls with random codes, handles, selectors, pointers and lengths. Only
  /// calls that would hurt this server itself are left out: releasing its own slots,
  /// exporting objects with garbage contexts (their destroy would run on them), the
  /// upcall-return code (it ends the current upcall), sleeping and printing.
  func fuzz() {
    let seed = replaySeed != 0 ? replaySeed : tessera_timestamp() | 1
    var random = Random(state: seed)
    let raw = RawCall()
    let digests: [UInt32] = [MemoryService.digest, Synchronization.digest, Supervision.digest]
    let pointers: [UInt32] = [
      0, 0x0010_0000, 0x3000_0000, 0x4000_0000, 0x4000_0FF0, 0x7000_0000, 0xB000_0000, 0xFFFF_F000,
    ]
    var refused = 0
    var accepted = 0
    var words = [UInt32](repeating: 0, count: 10)
    for _ in 0..<fuzzCalls {
      var code: UInt32
      switch random.below(8) {
      case 0: code = random.next()
      case 1: code = 9  // export
      case 2: code = 10 + random.below(2)  // acquire, release
      case 3: code = 13 + random.below(4)  // heap start, grow, shrink, null
      default: code = random.below(9)  // tessera_call0 ... tessera_call8
      }
      if code == UserCallCode.pause || code == UserCallCode.putchar || code == UserCallCode.return {
        code = UserCallCode.null
      }
      for index in 0..<10 {
        switch random.below(4) {
        case 0: words[index] = random.next()
        case 1: words[index] = pointers[Int(random.below(UInt32(pointers.count)))] &+ random.below(64)
        case 2: words[index] = random.below(0x2000)
        default: words[index] = [0, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF][Int(random.below(4))]
        }
      }
      switch code {
      case 0...8:
        if random.below(2) == 0 {
          // A slot it holds (memory, sync or supervision) with one of its real methods.
          let slot = random.below(3)
          words[0] = 2 + slot + (slot == 2 ? 1 : 0)
          words[1] = digests[Int(slot)] &+ random.below(6)
        } else if words[0] < 64 {
          words[0] = 64 + words[0]
        }
      case 9:
        // Not an index of its manifest (at most 32 interfaces): its own exports' indices
        // would make real objects around a garbage context, and their destroy would fault.
        if words[0] < 64 { words[0] = 64 + words[0] }
      case 11:
        if words[0] < 64 { words[0] = 64 + words[0] }
      default: break
      }
      let (result, status) = raw.call(code, words)
      if status == 0 { accepted += 1 } else { refused += 1 }
      // References made for it (allocate's memory, makeSemaphore's semaphore) go back.
      let madeReference =
        (words[0] == 2 && words[1] == MemoryService.digest)
        || (words[0] == 3 && words[1] == Synchronization.digest)
      if code <= 8, status == 0, result != 0, madeReference { _ = tessera_release(result) }
    }
    report(
      "@@FUZZ seed=\(hex: UInt32(truncatingIfNeeded: seed)) calls=\(fuzzCalls) refused=\(refused) accepted=\(accepted)"
    )
  }
}

func start() -> Program {
  Program.export(Attacker())!
}
