// KernelServiceCatalog: the services the kernel offers to compositions (`kernel.NAME`),
// shared by the kernel and by `tessera check`, so both agree on what exists.

/// A service the kernel provides. The kernel makes each one (KernelServices.make, a switch
/// over these cases, so a service cannot be listed without being made).
public enum KernelService: CaseIterable, Sendable {
  case console, clock, threads, synchronization, com1, irq4, system, timers, supervision, memory
  case pciConfiguration, settings

  /// The name used in compositions (`kernel.console`).
  public var name: StaticString {
    switch self {
    case .console: "console"
    case .clock: "clock"
    case .threads: "threads"
    case .synchronization: "sync"
    case .com1: "com1"
    case .irq4: "irq4"
    case .system: "system"
    case .timers: "timers"
    case .supervision: "supervision"
    case .memory: "memory"
    case .pciConfiguration: "pci"
    case .settings: "settings"
    }
  }

  /// The interface it implements.
  public var interface: StaticString {
    switch self {
    case .console: "Console"
    case .clock: "Clock"
    case .threads: "Threads"
    case .synchronization: "Synchronization"
    case .com1: "IOPorts"
    case .irq4: "InterruptLine"
    case .system: "SystemInfo"
    case .timers: "Timers"
    case .supervision: "Supervision"
    case .memory: "MemoryService"
    case .pciConfiguration: "PciConfiguration"
    case .settings: "Settings"
    }
  }

  /// Whether one loaded server at a time may have it bound (configuration space: two bus
  /// servers would each hand out the same device).
  public var singleKeeper: Bool { self == .pciConfiguration }
}

/// The kernel services by name, and every interface the kernel's generated code covers.
public enum KernelServiceCatalog {
  /// Every service, in the order the kernel creates them.
  public static let services: [KernelService] = KernelService.allCases

  /// Interfaces the kernel implements or calls that no service offers: the objects
  /// services make (semaphores, memory objects) and what the kernel calls in servers
  /// (threads' `Runnable`, interrupt handlers, pagers).
  public static let otherInterfaces: [StaticString] = [
    "Semaphore", "Runnable", "Memory", "Pager", "InterruptHandler",
  ]

  /// Every interface `tessera generate-kernel` makes dispatch functions and proxies for:
  /// the services' interfaces, then `otherInterfaces`.
  public static var kernelInterfaces: [StaticString] { services.map { $0.interface } + otherInterfaces }
}

/// Limits of the kernel that `tessera check` applies too, so the two agree.
public enum KernelLimits {
  /// Kernel-mode servers loaded at once: each has a 4 MiB heap slot of the kernel's
  /// server heap range (user-mode servers run their heaps in their own spaces).
  public static let kernelModeServers = 32
}
