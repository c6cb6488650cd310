// Quotas: the limits a composition sets on what one server instance may have the kernel
// hold for it, shared by the kernel (which enforces them) and `tessera check`.
//
// Contract: every resource has a default that keeps the kernel alive when many servers
// use it at once; a composition line `limit RESOURCE VALUE` after a `server` line changes
// it for that instance (and its restarts). Values are decimal, memory may end in K or M.
// A request beyond a limit is refused (the call's result says so) and logged, never a
// panic. Kernel-table entries held for a server are bounded by the sum of its mapping,
// thread and timer limits plus its interrupt lines.

/// A resource a composition can limit.
public enum QuotaResource: Int, CaseIterable, Sendable {
  /// Bytes of Memory objects allocated through `kernel.memory` and not yet freed.
  case memory
  /// Threads started through `kernel.threads` and not yet ended.
  case threads
  /// The highest priority those threads may have (3 is the kernel's interrupt and timer
  /// threads' own).
  case priority
  /// Timers set through `kernel.timers` and not yet ended.
  case timers
  /// Mappings (Memory objects and pager regions) made through `kernel.memory`.
  case mappings

  /// The word a composition uses.
  public var name: StaticString {
    switch self {
    case .memory: "memory"
    case .threads: "threads"
    case .priority: "priority"
    case .timers: "timers"
    case .mappings: "mappings"
    }
  }

  /// The limit when a composition says nothing.
  public var defaultLimit: UInt32 {
    switch self {
    case .memory: 16 << 20
    case .threads: 16
    case .priority: 2
    case .timers: 32
    case .mappings: 256
    }
  }

  /// The largest value a composition may give.
  public var maximum: UInt32 {
    switch self {
    case .memory: 1 << 30
    case .threads: 256
    case .priority: 3
    case .timers: 4096
    case .mappings: 4096
    }
  }

  /// The resource a composition word names.
  public static func named(_ word: UnsafeBufferPointer<UInt8>) -> QuotaResource? {
    allCases.first { equals(word, $0.name) }
  }
}

/// The limits of one instance.
public struct Quotas: Sendable {
  private var values: InlineArray<5, UInt32>

  /// The defaults.
  public init() {
    values = .init(repeating: 0)
    for resource in QuotaResource.allCases { values[resource.rawValue] = resource.defaultLimit }
  }

  /// The limit of `resource`.
  public subscript(resource: QuotaResource) -> UInt32 {
    get { values[resource.rawValue] }
    set { values[resource.rawValue] = newValue }
  }

  /// Reads a limit's value: decimal digits, for memory optionally followed by K or M;
  /// nil when malformed, zero, or above the resource's maximum.
  public static func value(_ word: UnsafeBufferPointer<UInt8>, for resource: QuotaResource) -> UInt32? {
    var digits = word.count
    var scale: UInt64 = 1
    if resource == .memory, let last = word.last {
      if last == UInt8(ascii: "K") { scale = 1 << 10 }
      if last == UInt8(ascii: "M") { scale = 1 << 20 }
      if scale != 1 { digits -= 1 }
    }
    guard digits > 0, digits <= 10 else { return nil }
    var value: UInt64 = 0
    for index in 0..<digits {
      let digit = word[index] &- UInt8(ascii: "0")
      guard digit < 10 else { return nil }
      value = value * 10 + UInt64(digit)
    }
    value *= scale
    guard value > 0 || resource == .priority, value <= UInt64(resource.maximum) else { return nil }
    return UInt32(truncatingIfNeeded: value)
  }
}
