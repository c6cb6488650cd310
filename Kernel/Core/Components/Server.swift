// Server: a loaded server file: its image, heap, reference table, lock and generated code.
//
// Contract: `Server.load` validates the file (ServerFile), copies and relocates it into
// kernel memory, generates its table's gate and acquire/release code, binds its imports
// to the kernel ABI (KernelABI.swift), and fills the method vector of every exported
// interface (dispatch functions, lock stubs or marshaling stubs, see CallStubs). It does not run any server
// code; the composition binds the required slots (handles 1...n) and then calls `start`.
// `unload` runs when no other table references the server any more: it releases the
// server's own table (which may unload others), then frees image, code, table and heap.

import CPU
import KernelCore

final class Server: ReferenceOwner {
  /// Servers loaded and not yet unloaded, for reports and the shell.
  nonisolated(unsafe) static var loaded: [Server] = []
  /// Heap slots in use (one bit each).
  nonisolated(unsafe) private static var heapSlots: UInt32 = 0
  /// Each server's heap has its own 4 MiB of address space in the server heap range.
  static let heapSlotSize: UInt32 = 4 << 20
  static let heapSlotCount = Int((Paging.serverHeapEnd - Paging.serverHeapStart) / heapSlotSize)

  let name: KernelMessage
  let file: ServerFile
  var table: ReferenceTable<KernelObject>
  var heap: HeapAllocator<PagedRegionBacking>
  private let heapSlot: Int
  private let image: UnsafeMutableRawPointer
  private let code: UnsafeMutableRawPointer
  private let codeSize: Int
  private var marshalInformation: [UnsafeMutablePointer<MarshalInformation>] = []
  /// The lock of a server that is not thread-safe (see ServerLock).
  let lock: UnsafeMutablePointer<UInt32>
  /// Threads waiting for the lock, in arrival order.
  var lockWaiters = ThreadQueue()
  /// Entries in other tables that hold this server's objects.
  var inboundReferences = 0
  /// Method vectors by manifest interface index (0 where the interface is not exported).
  private(set) var methodVectors: [UInt32]
  let startFunction: UInt32
  let destroyFunction: UInt32
  /// Objects of this server alive.
  var objectCount = 0
  private(set) var isLoaded = true

  /// Why loading failed.
  enum LoadError: Error {
    case file(ServerFileError)
    case noHeapSlot
    case outOfMemory
  }

  private init(
    name: KernelMessage, file: ServerFile, heapSlot: Int, image: UnsafeMutableRawPointer,
    code: UnsafeMutableRawPointer, codeSize: Int
  ) {
    self.codeSize = codeSize
    self.name = name
    self.file = file
    self.heapSlot = heapSlot
    let heapStart = UInt(Paging.serverHeapStart) + UInt(heapSlot) * UInt(Self.heapSlotSize)
    heap = HeapAllocator(
      start: heapStart, backing: PagedRegionBacking(end: heapStart + UInt(Self.heapSlotSize)))
    self.image = image
    self.code = code
    lock = .allocate(capacity: 2)
    lock.initialize(repeating: 0, count: 2)
    methodVectors = []
    let base = UInt32(UInt(bitPattern: image))
    startFunction = base + file.symbolAddress("tessera_start")!
    destroyFunction = base + file.symbolAddress("tessera_destroy")!
    table = ReferenceTable<KernelObject>(owner: nil)
    table.attach(owner: self)
    lock[1] = UInt32(UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque()))
  }

  /// Loads the server file in `bytes` (a boot module that stays in memory).
  static func load(bytes: UnsafeRawBufferPointer) -> Result<Server, LoadError> {
    let file: ServerFile
    do throws(ServerFileError) {
      file = try ServerFile(bytes: bytes)
    } catch { return .failure(.file(error)) }
    var slot = 0
    while slot < heapSlotCount && heapSlots & (1 << UInt32(slot)) != 0 { slot += 1 }
    guard slot < heapSlotCount else { return .failure(.noHeapSlot) }

    // Code: gate, acquire, release, then a vector and an entry per exported method.
    var methods = 0
    for export in 0..<file.manifest.exportCount {
      methods += file.manifest.interface(file.manifest.export(export)).methodCount
    }
    let codeSize =
      CallStubs.gateSize + CallStubs.acquireSize + CallStubs.releaseSize + methods
      * (CallStubs.methodEntrySize + 4)
    guard let image = KernelHeap.allocate(byteCount: Int(file.imageSize), alignment: 4096),
      let code = KernelHeap.allocate(byteCount: codeSize, alignment: 16)
    else { return .failure(.outOfMemory) }
    image.initializeMemory(as: UInt8.self, repeating: 0, count: Int(file.imageSize))
    heapSlots |= 1 << UInt32(slot)
    let server = Server(
      name: "\(text: file.manifest.name)", file: file, heapSlot: slot, image: image, code: code,
      codeSize: codeSize)

    var writer = CodeBuffer(
      memory: UnsafeMutableRawBufferPointer(start: code, count: codeSize),
      base: UInt32(UInt(bitPattern: code)))
    let entries = KernelABI.TableEntries.write(into: &writer, table: server.table.layout)
    do throws(ServerFileError) {
      try file.load(
        into: UnsafeMutableRawBufferPointer(start: image, count: Int(file.imageSize)),
        base: UInt32(UInt(bitPattern: image)),
        resolve: { name in KernelABI.address(of: name, table: entries) })
    } catch {
      server.release()
      return .failure(.file(error))
    }
    server.generateMethodEntries(&writer)
    loaded.append(server)
    return .success(server)
  }

  private func generateMethodEntries(_ writer: inout CodeBuffer) {
    let manifest = file.manifest
    let imageBase = UInt32(UInt(bitPattern: image))
    methodVectors = [UInt32](repeating: 0, count: manifest.interfaceCount)
    for export in 0..<manifest.exportCount {
      let index = manifest.export(export)
      let interface = manifest.interface(index)
      let vector = UnsafeMutablePointer<UInt32>(bitPattern: UInt(writer.address))!
      for _ in 0..<interface.methodCount { writer.emit32(0) }
      methodVectors[index] = UInt32(UInt(bitPattern: vector))
      for method in 0..<interface.methodCount {
        let dispatch =
          imageBase + file.symbolAddress(
            ServerFile.dispatchSymbol(interface: interface.name, method: method))!
        if !interface.method(method).isWordsOnly {
          let information = MarshalInformation.make(
            server: self, interface: interface, method: method, dispatch: dispatch)
          marshalInformation.append(information)
          vector[method] = writer.address
          CallStubs.writeMarshalStub(
            into: &writer, chain: CallChain.layout, information: UInt32(UInt(bitPattern: information)),
            marshal: KernelABI.marshalCallAddress)
        } else if manifest.isThreadSafe {
          vector[method] = dispatch  // nothing to add: the gate calls the server directly
        } else {
          vector[method] = writer.address
          CallStubs.writeLockStub(
            into: &writer, chain: CallChain.layout, dispatch: dispatch, lock: UInt32(UInt(bitPattern: lock)),
            wait: ServerLock.waitAddress, release: ServerLock.releaseAddress)
        }
      }
    }
  }

  /// `(offset, isGeneratedCode)` if `address` lies in this server's image or in the code
  /// the kernel generated for it.
  func locate(_ address: UInt32) -> (offset: UInt32, generated: Bool)? {
    let imageStart = UInt32(UInt(bitPattern: image))
    if address >= imageStart && address - imageStart < file.imageSize { return (address - imageStart, false) }
    let codeStart = UInt32(UInt(bitPattern: code))
    if address >= codeStart && address - codeStart < UInt32(codeSize) { return (address - codeStart, true) }
    return nil
  }

  /// Creates an object of manifest interface `index` around `context`; nil if the
  /// interface is not exported by this server.
  func makeObject(interfaceIndex index: Int, context: UInt32) -> KernelObject? {
    guard index < methodVectors.count, methodVectors[index] != 0 else { return nil }
    return KernelObject(
      owner: self, interface: file.manifest.interface(index), context: context, methods: methodVectors[index])
  }

  /// Runs `tessera_start` and returns the handle (in this server's table) it gave.
  func start() -> UInt32 {
    guard CallChain.push(self) else { return 0 }
    let handle = UInt32(truncatingIfNeeded: arch_call_words(startFunction, 0, 0, nil, 0))
    CallChain.pop()
    return handle
  }

  /// Unloads the server: releases its references, destroys its objects, frees its memory.
  func unload() {
    guard isLoaded else { return }
    isLoaded = false
    inboundReferences += 1  // keep self-releases below from re-entering unload
    table.releaseAll()
    inboundReferences -= 1
    if objectCount != 0 { Log.warning("server \(name) unloaded with \(objectCount) objects alive") }
    let heap = heap.statistics
    Log.info(
      "unloaded \(name): heap of \(heap.regionBytes / 1024) KiB (\(heap.bytesInUse) bytes in use) returned")
    release()
  }

  private func release() {
    heap.releaseAll()
    Self.heapSlots &= ~(1 << UInt32(heapSlot))
    for information in marshalInformation { information.deallocate() }
    marshalInformation = []
    table.deallocate()
    lock.deallocate()
    KernelHeap.free(image)
    KernelHeap.free(code)
    if let index = Self.loaded.firstIndex(where: { $0 === self }) { Self.loaded.remove(at: index) }
    if Self.loaded.isEmpty { Self.loaded = [] }  // give the array's storage back too
  }
}
