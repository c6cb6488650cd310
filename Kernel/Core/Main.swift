// Main: the boot sequence, from kernel_main to the running system.
//
// Contract: kernel_main runs once, on the boot stack, with interrupts off. It brings the
// machine up in dependency order (console, descriptor tables, boot information, frames,
// paging, heap, interrupts and timer), prints the banner, and hands over to `runSystem`
// (the default system, or the test suite in the test image). Any failure on the way is
// a panic with the reason.

import KernelCore

/// The kernel version printed in the banner.
let kernelVersion: StaticString = "0.1.0"

/// What the boot sequence learned and later code may ask about.
enum Boot {
  /// The kernel command line.
  nonisolated(unsafe) static var commandLine = BootCommandLine(
    bytes: UnsafeBufferPointer(start: nil, count: 0))
  /// The modules the loader passed, as (command line, bytes).
  nonisolated(unsafe) static var moduleTable: ModuleTable?
  /// The TSC rate measured against the PIT.
  nonisolated(unsafe) static var timestampsPerMillisecond: UInt64 = 0
}

@_cdecl("kernel_main")
func kernelMain(magic: UInt32, informationAddress: UInt32) -> Never {
  SerialPort.initialize()
  DescriptorTables.install()

  let information: MultibootInformation
  do throws(MultibootError) {
    information = try MultibootInformation(
      magic: magic, bytes: physicalBytes(informationAddress, MultibootInformation.parsedSize))
  } catch {
    panic("boot: \(error.message)")
  }
  if let address = information.commandLineAddress {
    Boot.commandLine = BootCommandLine(bytes: cString(at: address))
  }
  applyCommandLine()

  let modules: ModuleTable
  let memoryMap: MemoryMap
  do throws(MultibootError) {
    modules = try ModuleTable(
      bytes: physicalBytes(information.modulesAddress, Int(information.modulesCount) * ModuleTable.entrySize),
      count: information.modulesCount)
    memoryMap = try MemoryMap(
      bytes: physicalBytes(information.memoryMapAddress, Int(information.memoryMapLength)))
  } catch {
    panic("boot: \(error.message)")
  }
  Boot.moduleTable = modules
  initializeMemory(information: information, memoryMap: memoryMap, modules: modules)

  InterruptController.initialize()
  Profiler.startIfAsked()
  Timer.start()
  guard CallChain.words == Int(Processor.callChainWords()) else {
    panic(
      "Calls.S reserves \(Processor.callChainWords()) call-chain words, CallChain uses \(CallChain.words)")
  }
  Processor.setChainDepthAddress(CallChain.layout.depth)  // before any call into a server
  Scheduler.initialize()
  Supervisor.start()
  Processor.enableInterrupts()
  calibrateTimestampCounter()
  findSymbolMap(modules)
  printBanner()
  runSystem()
}

/// Applies `loglevel=` and `on-panic=` from the command line.
private func applyCommandLine() {
  if let level = Boot.commandLine.value(of: "loglevel"), !Log.setThreshold(named: level) {
    Log.warning("unknown loglevel '\(text: level)' (use error, warning, info or debug)")
  }
  Machine.exitOnStop = Boot.commandLine.has("on-panic", equalTo: "exit")
}

/// Builds the frame allocator with everything the loader placed in memory reserved,
/// turns on paging and makes the heap usable.
private func initializeMemory(information: MultibootInformation, memoryMap: MemoryMap, modules: ModuleTable) {
  typealias Reservation = PhysicalMemory.Reservation
  let kernelStart = Processor.kernelImageStart()
  // Two ranges per boot module (its bytes and its command line) and four more: room for
  // 510 modules, on the 64 KiB boot stack (16 KiB).
  var reservations: InlineArray<1024, Reservation> = .init(repeating: Reservation(base: 0, length: 0))
  var count = 0
  func reserve(_ base: UInt32, _ length: Int) {
    guard count < reservations.count else {
      panic("boot: more than \(reservations.count) boot memory ranges to reserve (at most 510 boot modules)")
    }
    reservations[count] = Reservation(base: UInt64(base), length: UInt64(length))
    count += 1
  }
  reserve(kernelStart, Int(Processor.kernelImageEnd() - kernelStart))
  reserve(information.memoryMapAddress, Int(information.memoryMapLength))
  reserve(information.modulesAddress, Int(information.modulesCount) * ModuleTable.entrySize)
  if let address = information.commandLineAddress { reserve(address, cString(at: address).count + 1) }
  for module in modules {
    reserve(module.start, Int(module.size))
    if module.commandLineAddress != 0 {
      reserve(module.commandLineAddress, cString(at: module.commandLineAddress).count + 1)
    }
  }
  withUnsafeBytes(of: &reservations) { raw in
    let all = raw.bindMemory(to: Reservation.self)
    PhysicalMemory.initialize(
      memoryMap: memoryMap, reservations: UnsafeBufferPointer(rebasing: all[0..<count]))
  }
  // Reservations below 1 MiB (the information structure itself) need no entry: the
  // first MiB is never handed out.
  Paging.enable(directMapEnd: max(PhysicalMemory.usableEnd, Processor.kernelImageEnd()))
  DescriptorTables.setDoubleFaultDirectory(Paging.directory)
  KernelHeap.initialize()
}

/// Measures the TSC rate over 10 timer ticks.
private func calibrateTimestampCounter() {
  Timer.sleep(ticks: 1)  // start on a tick edge
  let startTicks = Timer.ticks
  let start = Processor.timestamp()
  Timer.sleep(ticks: 10)
  let elapsedTicks = Timer.ticks - startTicks
  let elapsed = Processor.timestamp() - start
  // ticks * divisor / inputFrequency seconds elapsed
  let nanoseconds = elapsedTicks * Timer.divisor * 1_000_000_000 / Timer.inputFrequency
  Boot.timestampsPerMillisecond = max(1, elapsed * 1_000_000 / max(nanoseconds, 1))
}

/// Finds the module named `*.map` and uses it for backtraces.
private func findSymbolMap(_ modules: ModuleTable) {
  for module in modules where module.commandLineAddress != 0 {
    let name = cString(at: module.commandLineAddress)
    if name.count >= 4, equals(UnsafeBufferPointer(rebasing: name[(name.count - 4)...]), ".map") {
      Panic.symbols = SymbolMap(bytes: UnsafeRawBufferPointer(physicalBytes(module.start, Int(module.size))))
      return
    }
  }
  Log.warning("no kernel symbol map module (*.map): backtraces will show addresses only")
}

private func printBanner() {
  let frames = PhysicalMemory.statistics
  let usableMiB = frames.usableFrames * Int(Paging.pageSize) / 1_048_576
  let bootMilliseconds = (Processor.timestamp() - Processor.bootTimestamp()) / Boot.timestampsPerMillisecond
  let clock = Machine.readClock()
  func two(_ value: Int) -> KernelMessage { value < 10 ? "0\(value)" : "\(value)" }
  Log.info(
    "Tessera \(kernelVersion) (i686): \(usableMiB) MiB usable memory, booted in \(bootMilliseconds) ms at \(clock.year)-\(two(clock.month))-\(two(clock.day)) \(two(clock.hour)):\(two(clock.minute)):\(two(clock.second)) UTC"
  )
}

/// The bytes at a physical address (identity-mapped, or before paging).
func physicalBytes(_ address: UInt32, _ count: Int) -> UnsafeRawBufferPointer {
  UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: UInt(address)), count: count)
}

/// The NUL-terminated string at a physical address, without the NUL (at most 4 KiB).
func cString(at address: UInt32) -> UnsafeBufferPointer<UInt8> {
  let start = UnsafePointer<UInt8>(bitPattern: UInt(address))!
  var length = 0
  while length < 4096 && start[length] != 0 { length += 1 }
  return UnsafeBufferPointer(start: start, count: length)
}
