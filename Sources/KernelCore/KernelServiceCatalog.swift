// KernelServiceCatalog: the services the kernel offers to compositions (`kernel.NAME`),
// shared by the kernel and by `tessera check`, so both agree on what exists.

/// A service the kernel provides.
public struct KernelService: Sendable {
  /// The name used in compositions (`kernel.console`).
  public var name: StaticString
  /// The interface it implements.
  public var interface: StaticString
  /// Whether one loaded server at a time may have it bound (configuration space: two bus
  /// servers would each hand out the same device).
  public var singleKeeper = false

  /// The service `name`, implementing `interface`, held by one server at a time if
  /// `singleKeeper`.
  public init(name: StaticString, interface: StaticString, singleKeeper: Bool = false) {
    self.name = name
    self.interface = interface
    self.singleKeeper = singleKeeper
  }
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
    KernelService(name: "pci", interface: "PciConfiguration", singleKeeper: true),
    KernelService(name: "settings", interface: "Settings"),
  ]
}

/// Limits of the kernel that `tessera check` applies too, so the two agree.
public enum KernelLimits {
  /// Kernel-mode servers loaded at once: each has a 4 MiB heap slot of the kernel's
  /// server heap range (user-mode servers run their heaps in their own spaces).
  public static let kernelModeServers = 32
}
