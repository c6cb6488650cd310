// KernelServiceCatalog: the services the kernel offers to compositions (`kernel.NAME`),
// shared by the kernel and by `tessera check`, so both agree on what exists.

/// A service the kernel provides.
public struct KernelService: Sendable {
  /// The name used in compositions (`kernel.console`).
  public var name: StaticString
  /// The interface it implements.
  public var interface: StaticString
}

/// The kernel services by name.
public enum KernelServiceCatalog {
  /// Every service, in the order the kernel creates them.
  public static let services: [KernelService] = [
    KernelService(name: "console", interface: "Console"),
    KernelService(name: "clock", interface: "Clock"),
    KernelService(name: "threads", interface: "Threads"),
    KernelService(name: "sync", interface: "Synchronization"),
    KernelService(name: "com1", interface: "IOPorts"),
    KernelService(name: "irq4", interface: "InterruptLine"),
    KernelService(name: "system", interface: "SystemInfo"),
    KernelService(name: "timers", interface: "Timers"),
    KernelService(name: "supervision", interface: "Supervision"),
    KernelService(name: "memory", interface: "MemoryService"),
  ]
}
