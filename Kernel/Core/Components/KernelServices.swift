// KernelServices: the interfaces the kernel itself implements and offers to servers as
// references (`kernel.NAME` in a composition). A server reaches nothing else.
//
// Contract: each service is one KernelObject created at first use; its methods run in the
// kernel through generated dispatch functions (build/generated/KernelInterfaces.swift)
// and marshaling stubs, so their blocks are copied and bounded like any other call.

import CPU
import KernelCore

/// The kernel's Console: one log line per write, prefixed with the writing server.
final class ConsoleService: ConsoleImplementation {
  func write(text: UnsafeRawBufferPointer) {
    let name: KernelMessage = CallChain.currentServer?.name ?? "kernel"
    Log.info("\(name): \(text: text.bindMemory(to: UInt8.self))")
  }
}

/// The kernel's Clock.
final class ClockService: ClockImplementation {
  func uptimeMilliseconds() -> UInt { UInt(truncatingIfNeeded: Timer.uptimeNanoseconds / 1_000_000) }
}

/// The base of boxes that hold kernel service implementations.
class KernelObjectBox {}

enum KernelServices {
  nonisolated(unsafe) private static var console: KernelObject?
  nonisolated(unsafe) private static var clock: KernelObject?
  nonisolated(unsafe) private static var code: UnsafeMutableRawPointer?
  nonisolated(unsafe) private static var codeUsed = 0
  private static let codeSize = 1024

  /// The service called `name`, if the kernel offers one.
  static func service(named name: UnsafeBufferPointer<UInt8>) -> KernelObject? {
    if equals(name, "console") {
      if console == nil {
        console = makeService(descriptor: consoleDescriptor, dispatch: consoleDispatchAddresses(), box: ConsoleBox(ConsoleService()))
      }
      return console
    }
    if equals(name, "clock") {
      if clock == nil {
        clock = makeService(descriptor: clockDescriptor, dispatch: clockDispatchAddresses(), box: ClockBox(ClockService()))
      }
      return clock
    }
    return nil
  }

  /// Creates every service now (they live for good).
  static func createAll() {
    for service in KernelServiceCatalog.services {
      let name = service.name
      guard self.service(named: UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)) != nil else {
        panic("kernel service \(name) is in the catalog but not implemented")
      }
    }
  }

  /// The names offered, for error messages.
  static let names: StaticString = "console, clock"

  private static func makeService(descriptor bytes: [UInt8], dispatch: [UInt], box: KernelObjectBox) -> KernelObject {
    let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
    storage.copyBytes(from: bytes)
    let interface = try! InterfaceDescriptor(bytes: UnsafeRawBufferPointer(storage))
    if code == nil { code = KernelHeap.allocate(byteCount: codeSize, alignment: 16) }
    var writer = CodeBuffer(
      memory: UnsafeMutableRawBufferPointer(start: code! + codeUsed, count: codeSize - codeUsed),
      base: UInt32(UInt(bitPattern: code! + codeUsed)))
    let vector = UnsafeMutablePointer<UInt32>(bitPattern: UInt(writer.address))!
    for method in 0..<interface.methodCount { writer.emit32(UInt32(dispatch[method])) }  // words only: direct
    for method in 0..<interface.methodCount where !interface.method(method).isWordsOnly {
      vector[method] = writer.address
      let information = MarshalInformation.make(server: nil, interface: interface, method: method, dispatch: UInt32(dispatch[method]))
      CallStubs.writeMarshalStub(
        into: &writer, chain: CallChain.layout, information: UInt32(UInt(bitPattern: information)),
        marshal: KernelABI.marshalCallAddress)
    }
    codeUsed += writer.count
    let context = UInt32(UInt(bitPattern: Unmanaged.passRetained(box).toOpaque()))
    let object = KernelObject(owner: nil, interface: interface, context: context, methods: UInt32(UInt(bitPattern: vector)))
    object.references += 1  // the kernel keeps its services for good
    return object
  }
}
