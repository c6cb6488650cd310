// Marshal: the call path for methods whose signature needs more than copying words:
// references are translated between the caller's and the callee's tables, and memory
// blocks are copied in and out with their sizes checked against the declared bounds.
//
// Contract: `marshal_call` runs as the method entry the gate calls (after it pushed the
// call-chain record). On any error it returns
// a status (see CallStubs / CallError) and leaves the callee uncalled and every table as
// it was. Reference arguments are lent to the callee for the call (installed in its table
// and released when it returns; it keeps them by acquiring). A returned reference moves
// from the callee's table to the caller's. Blocks are copied through kernel buffers, so a
// callee never sees the caller's memory.

import I686CodeGeneration
import KernelCore

/// What the marshaling path needs to know about one method, kept for the server's life.
struct MarshalInformation {
  /// The callee (unretained), or nil for a kernel service.
  var server: Unmanaged<Server>?
  var interface: InterfaceDescriptor
  /// The method's descriptor, parsed once at load time rather than on every call.
  var method: MethodDescriptor
  /// For each reference parameter (by position), the callee's descriptor of the interface
  /// it must implement; looked up at load time (nil: the callee does not know it).
  var parameterInterfaces: InlineArray<8, InterfaceDescriptor?>
  /// For a reference result, the callee's descriptor of the interface it must return.
  var resultInterface: InterfaceDescriptor?
  var dispatch: UInt32

  static func make(server: Server?, interface: InterfaceDescriptor, method: Int, dispatch: UInt32)
    -> UnsafeMutablePointer<MarshalInformation>
  {
    let descriptor = interface.method(method)
    var parameterInterfaces: InlineArray<8, InterfaceDescriptor?> = .init(repeating: nil)
    for (position, parameter) in descriptor.parameters.enumerated() where parameter.kind == .reference {
      parameterInterfaces[position] = calleeInterface(named: parameter.interfaceName!, callee: server)
    }
    let resultInterface = descriptor.resultInterface.flatMap { calleeInterface(named: $0, callee: server) }
    let information = UnsafeMutablePointer<MarshalInformation>.allocate(capacity: 1)
    information.initialize(
      to: MarshalInformation(
        server: server.map { Unmanaged.passUnretained($0) }, interface: interface, method: descriptor,
        parameterInterfaces: parameterInterfaces, resultInterface: resultInterface, dispatch: dispatch))
    return information
  }
}

/// The kernel's own reference table (the composition's references) and its gate.
enum KernelReferences {
  nonisolated(unsafe) static var table = ReferenceTable<KernelObject>(owner: nil)

  /// The gate the kernel calls objects through, like a server's tessera_callN (the
  /// symbol map cannot name it: it is generated; a backtrace shows it as "?").
  /// Only the gate: the kernel counts its own references in Swift (`table`), so no
  /// generated acquire or release code is written for its table.
  static let gate: UInt32 = {
    let size = CallStubs.gateSize
    let code = KernelHeap.allocate(byteCount: size, alignment: 16)!
    var writer = CodeBuffer(
      memory: UnsafeMutableRawBufferPointer(start: code, count: size), base: UInt32(UInt(bitPattern: code)))
    CallStubs.writeGate(into: &writer, table: table.layout, chain: CallChain.layout)
    return writer.base
  }()

  /// Calls method `method` of the object behind kernel handle `handle` with `words`.
  static func call(
    _ handle: UInt32, method: Int,
    words: UnsafeBufferPointer<UInt32> = UnsafeBufferPointer(start: nil, count: 0)
  )
    -> UInt64
  {
    guard let object = table.object(handle) else { return UInt64(CallABI.statusInvalidHandle) << 32 }
    return Processor.callWords(
      gate, handle, object.digest &+ UInt32(method), words.baseAddress, UInt32(words.count))
  }
}

@inline(__always)
private func failure(_ status: UInt32) -> UInt64 { UInt64(status) << 32 }

/// Runs `body` on the table of `server` (the kernel's for nil) with interrupts disabled:
/// another thread of the same server may change the table too.
private func withTable<Result>(of server: Server?, _ body: (inout ReferenceTable<KernelObject>) -> Result)
  -> Result
{
  Machine.withInterruptsDisabled {
    if let server { return body(&server.table) }
    return body(&KernelReferences.table)
  }
}

/// Whether the caller may pass `address..<address+count` as a block: for a user-mode
/// caller, user memory of its own space (writable if the block is copied out); for a
/// kernel-mode caller, mapped memory.
private func isBlockAccessible(_ caller: Server?, _ address: UInt32, _ count: UInt32, write: Bool) -> Bool {
  if let space = caller?.space { return space.isAccessible(address, count, write: write) }
  return isMapped(address, count)
}

/// Copies a block between the caller's memory and a kernel buffer; false if a page fault
/// stopped it (a user-mode caller's memory can change under the check).
private func copyBlock(
  _ caller: Server?, to destination: UnsafeMutableRawPointer, from source: UnsafeRawPointer, _ count: UInt32
) -> Bool {
  if caller?.space != nil { return Processor.copyUser(destination, source, count) == 0 }
  destination.copyMemory(from: source, byteCount: Int(truncatingIfNeeded: count))  // a checked block size
  return true
}

/// Whether every page of `address..<address+count` is mapped (kernel-mode callers).
private func isMapped(_ address: UInt32, _ count: UInt32) -> Bool {
  guard count > 0 else { return true }
  guard address >= Paging.pageSize, UInt64(address) + UInt64(count) <= 0x1_0000_0000 else { return false }
  var page = address & ~(Paging.pageSize - 1)
  while UInt64(page) < UInt64(address) + UInt64(count) {
    guard Paging.translate(page) != nil else { return false }
    if page > UInt32.max - Paging.pageSize { break }
    page += Paging.pageSize
  }
  return true
}

@_cdecl("marshal_call")
func marshalCall(_ informationAddress: UnsafeMutableRawPointer, _ arguments: UnsafeMutablePointer<UInt32>)
  -> UInt64
{
  // Nested calls use kernel stack: refuse one that would leave too little (the guard
  // below the stack would stop the kernel, not the server that nests them).
  guard KernelStacks.roomForCall else { return failure(CallABI.statusOutOfResources) }
  let information = informationAddress.assumingMemoryBound(to: MarshalInformation.self).pointee
  let callee = information.server?.takeUnretainedValue()
  // The caller: the innermost server below the callee's record (which the gate pushed),
  // or the kernel (nil).
  let caller = CallChain.server(below: CallChain.depth - 1)
  let method = information.method
  var words: InlineArray<8, UInt32> = .init(repeating: 0)
  var lent: InlineArray<8, UInt32> = .init(repeating: 0)
  var lentCount = 0
  var buffers: InlineArray<4, UInt> = .init(repeating: 0)
  var userBlocks: InlineArray<4, UserBlock> = .init(
    repeating: UserBlock(word: 0, buffer: UnsafeMutableRawPointer(bitPattern: 16)!, size: 0, copiesOut: false)
  )
  var blockCount = 0  // blocks copied in so far; buffers[k] belongs to the k-th block
  var status: UInt32 = 0

  // Arguments, in.
  var word = 0
  var position = 0
  for parameter in method.parameters where status == 0 {
    switch parameter.kind {
    case .word:
      words[word] = arguments[2 + word]
    case .reference:
      let handle = arguments[2 + word]
      if handle != 0 {
        // Looked up and installed at once: between the two another thread of the caller
        // could release the handle, destroying the object before the callee's table
        // counted it.
        let expected = information.parameterInterfaces[position]
        let (installed, refusal) = Machine.withInterruptsDisabled { () -> (UInt32, UInt32) in
          guard let object = withTable(of: caller, { $0.object(handle) }) else {
            return (0, CallABI.statusInvalidHandle)
          }
          guard let expected, object.interface.matches(expected) else {
            return (0, CallABI.statusWrongInterface)
          }
          let installed = withTable(of: callee) { $0.install(object) }
          return installed != 0 ? (installed, 0) : (0, CallABI.statusOutOfResources)
        }
        guard refusal == 0 else {
          status = refusal
          break
        }
        words[word] = installed
        lent[lentCount] = installed
        lentCount += 1
      }
    case .block:
      let address = arguments[2 + word]
      let size = arguments[3 + word]
      guard size <= parameter.maximumSize else {
        status = CallABI.statusBlockTooLarge
        break
      }
      guard isBlockAccessible(caller, address, size, write: parameter.direction!.copiesOut) else {
        status = CallABI.statusBadBlock
        break
      }
      guard let buffer = KernelHeap.allocate(byteCount: max(Int(truncatingIfNeeded: size), 1), alignment: 16)
      else {
        status = CallABI.statusOutOfResources
        break
      }
      buffers[blockCount] = UInt(bitPattern: buffer)
      userBlocks[blockCount] = UserBlock(
        word: 2 + word, buffer: buffer, size: size, copiesOut: parameter.direction!.copiesOut)
      blockCount += 1
      if parameter.direction!.copiesIn && size > 0 {
        guard copyBlock(caller, to: buffer, from: UnsafeRawPointer(bitPattern: UInt(address))!, size) else {
          status = CallABI.statusBadBlock
          break
        }
      } else {
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: Int(truncatingIfNeeded: size))
      }
      words[word] = UInt32(UInt(bitPattern: buffer))
      words[word + 1] = size
    }
    word += parameter.callWords
    position += 1
  }

  var result: UInt64 = 0
  if status == 0 {
    // The call itself (the gate has pushed the callee's record); the lock as in a lock stub.
    var acquisition = ServerLock.Acquisition.reentered
    if let callee, !callee.file.manifest.isThreadSafe { acquisition = ServerLock.acquire(callee.lock) }
    let tookLock = acquisition.took
    CallChain.setTookLock(tookLock, at: CallChain.depth - 1)
    if acquisition == .wouldDeadlock {
      status = CallABI.statusWouldDeadlock
    } else if let callee, callee.failed {
      // It failed while this call waited for its lock: nothing of it may run any more.
      status = CallABI.statusServerUnavailable
    } else if let callee, callee.space != nil {
      // User mode: the words after the context and selector, blocks copied to its stack.
      var frame: InlineArray<10, UInt32> = .init(repeating: 0)
      frame[0] = arguments[0]
      frame[1] = arguments[1]
      for index in 0..<method.callWords { frame[2 + index] = words[index] }
      result = frame.withMutableBuffer { frameBuffer in
        userBlocks.withMutableBuffer { blocks in
          UserCalls.upcall(
            callee, entry: information.dispatch,
            arguments: UnsafeMutableBufferPointer(rebasing: frameBuffer[0..<(2 + method.callWords)]),
            blocks: UnsafeMutableBufferPointer(rebasing: blocks[0..<blockCount]))
        }
      }
      if result >> 32 != 0 { status = UInt32(truncatingIfNeeded: result >> 32) }
    } else {
      result = words.span.withUnsafeBufferPointer { buffer in
        Processor.callWordsWithRecordPushed(
          information.dispatch, arguments[0], arguments[1], buffer.baseAddress, UInt32(method.callWords))
      }
    }
    if tookLock {
      CallChain.setTookLock(false, at: CallChain.depth - 1)
      ServerLock.release(callee!.lock)
    }
  }
  var value = UInt32(truncatingIfNeeded: result)  // dispatch functions return one word

  // Blocks, out.
  word = 0
  position = 0
  var block = 0
  for parameter in method.parameters {
    if parameter.kind == .block {
      let buffer = UnsafeRawPointer(bitPattern: buffers[block])
      if status == 0, let buffer, parameter.direction!.copiesOut {
        let size = arguments[3 + word]
        let length = method.result == .filled && method.filledParameter == position ? value : size
        if length > size {
          status = CallABI.statusBlockTooLarge
        } else if length > 0,
          !copyBlock(
            caller, to: UnsafeMutableRawPointer(bitPattern: UInt(arguments[2 + word]))!, from: buffer, length)
        {
          status = CallABI.statusBadBlock
        }
      }
      if let buffer { KernelHeap.free(UnsafeMutableRawPointer(mutating: buffer)) }
      block += 1
    }
    word += parameter.callWords
    position += 1
  }

  // A returned reference moves from the callee's table to the caller's.
  if status == 0 && (method.result == .reference || method.result == .optionalReference) {
    if value == 0 {
      if method.result == .reference { status = CallABI.statusNullReference }
    } else {
      // The callee's word names a reference of the declared interface, or the call fails:
      // a caller's table never holds a reference of a type it did not ask for. Looked up,
      // installed and released at once (another thread of the callee could release it in
      // between).
      let returned = value
      let expected = information.resultInterface
      (value, status) = Machine.withInterruptsDisabled { () -> (UInt32, UInt32) in
        guard let object = withTable(of: callee, { $0.object(returned) }) else {
          return (0, CallABI.statusInvalidHandle)
        }
        var outcome: (UInt32, UInt32) = (0, CallABI.statusWrongInterface)
        if let expected, object.interface.matches(expected) {
          let installed = withTable(of: caller) { $0.install(object) }
          outcome = installed != 0 ? (installed, 0) : (0, CallABI.statusOutOfResources)
        }
        _ = withTable(of: callee) { $0.release(returned) }
        return outcome
      }
    }
  }

  for index in 0..<lentCount { _ = withTable(of: callee) { $0.release(lent[index]) } }
  return status == 0 ? UInt64(value) : failure(status)
}

/// The descriptor the callee has for interface `name` (its manifest's, or the kernel's
/// own for kernel services).
private func calleeInterface(named name: UnsafeBufferPointer<UInt8>, callee: Server?) -> InterfaceDescriptor?
{
  if let callee {
    guard let index = callee.file.manifest.interfaceIndex(named: name) else { return nil }
    return callee.file.manifest.interface(index)
  }
  return KernelServices.descriptor(named: name)
}
