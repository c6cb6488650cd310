// Generator: Swift source generated from interface declarations, for servers and for the
// kernel's own interfaces. Nothing that marshals a call is written by hand.
//
// Contract: for a server, `serverSource` emits one file with a proxy struct per used
// interface (each method a call through the kernel ABI that throws `CallError`), an
// implementation protocol, export function and C dispatch function per implemented
// interface, accessors for required slots, and `tessera_start`. For the kernel,
// `kernelSource` emits implementation protocols and dispatch functions only. The call
// ABI is described in docs/ARCHITECTURE.md; selectors are `digest &+ methodIndex`.

import KernelCore

/// Interfaces by name, with the closure of what a set of names references.
public struct InterfaceCatalog {
  /// Every interface by name.
  public var interfaces: [String: InterfaceDeclaration] = [:]

  /// A catalog of `declarations`; names must be unique and references resolvable.
  public init(_ declarations: [InterfaceDeclaration]) throws {
    for declaration in declarations {
      if let earlier = interfaces[declaration.name] {
        throw LanguageError(
          file: declaration.file, line: declaration.line,
          reason: "interface '\(declaration.name)' is also declared in \(earlier.file):\(earlier.line)")
      }
      interfaces[declaration.name] = declaration
    }
    for declaration in declarations {
      for name in declaration.referencedInterfaces where interfaces[name] == nil {
        throw LanguageError(
          file: declaration.file, line: declaration.line,
          reason:
            "interface '\(declaration.name)' uses unknown interface '\(name)' (a parameter is word, in/out/inout bytes[N] or an interface; the interfaces: \(interfaces.keys.sorted().joined(separator: ", ")))"
        )
      }
    }
  }

  /// This catalog with `declarations` replacing interfaces of the same name (a server's
  /// folder may carry its own version of an interface, for example to stay on an old one).
  public func overriding(with declarations: [InterfaceDeclaration]) throws -> InterfaceCatalog {
    var merged = self
    for declaration in declarations { merged.interfaces[declaration.name] = declaration }
    return try InterfaceCatalog(Array(merged.interfaces.values))
  }

  /// `roots` followed by every interface they reference, transitively, in first-seen order.
  public func closure(of roots: [String], file: String) throws -> [InterfaceDeclaration] {
    var order: [String] = []
    var pending = roots
    while !pending.isEmpty {
      let name = pending.removeFirst()
      guard !order.contains(name) else { continue }
      guard let declaration = interfaces[name] else {
        throw LanguageError(file: file, line: 0, reason: "unknown interface '\(name)'")
      }
      order.append(name)
      pending += declaration.referencedInterfaces
    }
    return order.map { interfaces[$0]! }
  }

  /// The interfaces a server's manifest describes, in manifest order: implemented first,
  /// then required, then everything they reference.
  public func interfaces(of server: ServerDeclaration) throws -> [InterfaceDeclaration] {
    try closure(of: server.implemented + server.requires.map(\.interface), file: server.file)
  }
}

/// The digest (FNV-1a of the descriptor) that tags calls to `interface`.
public func digest(of interface: InterfaceDeclaration) -> UInt32 {
  let bytes = interface.descriptor()
  return bytes.withUnsafeBytes { try! InterfaceDescriptor(bytes: $0).digest }
}

private func hex(_ value: UInt32) -> String {
  let digits = String(value, radix: 16)
  return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}

private func docComment(_ lines: [String], indent: String) -> String {
  lines.map { "\(indent)/// \($0)\n" }.joined()
}

private func swiftParameterType(_ type: ParameterType) -> String {
  switch type {
  case .word: "UInt"
  case .reference(let interface): interface
  case .block(let direction, _):
    direction == .input ? "UnsafeRawBufferPointer" : "UnsafeMutableRawBufferPointer"
  }
}

private func swiftResultType(_ result: ResultType) -> String? {
  switch result {
  case .none: nil
  case .word: "UInt"
  case .reference(let interface, let optional): optional ? "\(interface)?" : interface
  case .filled: "Int"
  }
}

/// Names of the call words of a method's parameters, in ABI order.
private func callWords(_ method: MethodDeclaration) -> [String] {
  var words: [String] = []
  for (index, _) in method.parameters.enumerated() {
    if case .block = method.parameters[index].type {
      words += ["w\(words.count)", "w\(words.count + 1)"]
    } else {
      words.append("w\(words.count)")
    }
  }
  return words
}

/// The import through which a server calls `method` of its required slot `handle`
/// (KernelCore's BoundCallImport).
func boundCallName(words: Int, handle: Int, method: Int) -> String {
  "tessera_bound_call\(words)_\(handle)_\(method)"
}

/// The declarations of the bound-call imports the proxies of a server with these required
/// slots use.
func boundCallDeclarations(_ slots: [(handle: Int, interface: InterfaceDeclaration)]) -> String {
  var text = ""
  for slot in slots {
    for (index, method) in slot.interface.methods.enumerated() {
      let words = callWords(method).count
      let name = boundCallName(words: words, handle: slot.handle, method: index)
      let parameters = ["_ handle: UInt32", "_ selector: UInt32"] + (0..<words).map { "_ w\($0): UInt32" }
      text += "@_extern(c, \"\(name)\")\n"
      text += "private func \(name)(\(parameters.joined(separator: ", "))) -> UInt64\n"
    }
    for operation in ["acquire", "release"] {
      let name = "tessera_bound_\(operation)_\(slot.handle)"
      text += "@_extern(c, \"\(name)\")\nprivate func \(name)(_ handle: UInt32) -> UInt32\n"
    }
  }
  return text.isEmpty ? "" : text + "\n"
}

/// The proxy struct for `interface`, used by clients. A call on one of `boundHandles` (the
/// server's required slots of this interface) goes through the slot's bound-call import;
/// after inlining with a slot's constant handle that is one direct call.
func proxySource(_ interface: InterfaceDeclaration, boundHandles: [Int] = []) -> String {
  var text = docComment(interface.documentation, indent: "")
  text += """
    public struct \(interface.name): InterfaceReference {
      /// The handle in this server's reference table.
      public let handle: UInt32
      /// Wraps a handle the kernel installed for this interface.
      public init(handle: UInt32) { self.handle = handle }
      /// The digest of the interface's descriptor; selectors are `digest &+ method index`.
      public static let digest: UInt32 = \(hex(digest(of: interface)))

    """
  for (index, method) in interface.methods.enumerated() {
    text += docComment(method.documentation, indent: "  ")
    let parameters = method.parameters.map { "\($0.name): \(swiftParameterType($0.type))" }.joined(
      separator: ", ")
    let result = swiftResultType(method.result).map { " -> \($0)" } ?? ""
    text += "  public func \(method.name)(\(parameters)) throws(CallError)\(result) {\n"
    var arguments = ["handle", "Self.digest &+ \(index)"]
    for parameter in method.parameters {
      switch parameter.type {
      case .word: arguments.append("UInt32(truncatingIfNeeded: \(parameter.name))")
      case .reference: arguments.append("\(parameter.name).handle")
      case .block:
        arguments.append("UInt32(UInt(bitPattern: \(parameter.name).baseAddress))")
        arguments.append("UInt32(truncatingIfNeeded: \(parameter.name).count)")
      }
    }
    let words = callWords(method).count
    let argumentList = arguments.joined(separator: ", ")
    var call = "tessera_call\(words)(\(argumentList))"
    if !boundHandles.isEmpty {
      text += "    let callResult: UInt64\n    switch handle {\n"
      for handle in boundHandles {
        text +=
          "    case \(handle): callResult = \(boundCallName(words: words, handle: handle, method: index))(\(argumentList))\n"
      }
      text += "    default: callResult = \(call)\n    }\n"
      call = "callResult"
    }
    switch method.result {
    case .none: text += "    _ = try CallError.check(\(call))\n"
    case .word: text += "    return UInt(try CallError.check(\(call)))\n"
    case .filled: text += "    return Int(try CallError.check(\(call)))\n"
    case .reference(let name, let optional):
      text += "    let handle = try CallError.check(\(call))\n"
      text +=
        optional
        ? "    return handle == 0 ? nil : \(name)(handle: handle)\n" : "    return \(name)(handle: handle)\n"
    }
    text += "  }\n\n"
  }
  if !boundHandles.isEmpty {
    // A slot's count goes through its bound acquire and release (the kernel's code for
    // them reads the slot's entry directly); other handles through the general ones.
    func countSwitch(_ operation: String, _ result: String) -> String {
      var text = "    switch handle {\n"
      for handle in boundHandles {
        text += "    case \(handle): \(result)tessera_bound_\(operation)_\(handle)(handle)\n"
      }
      return text + "    default: \(result)tessera_\(operation)(handle)\n    }\n"
    }
    text += """
        /// Adds a count to the reference, so one more `release` is needed to drop it.
        public func acquire() throws(CallError) {
          let status: UInt32

      """
    text += countSwitch("acquire", "status = ")
    text += """
          guard status == 0 else { throw CallError(status: status) }
        }

        /// Drops one count; the reference is gone at zero. Returns false if the handle was
        /// not a valid reference of this server (nothing happens then).
        @discardableResult
        public func release() -> Bool {
          let status: UInt32

      """
    text += countSwitch("release", "status = ")
    text += "    return status == 0\n  }\n\n"
  }
  text += "}\n\n"
  return text
}

/// The implementation protocol, box and dispatch functions for `interface`.
/// `symbolPrefix` is `tessera_dispatch` in servers and `tessera_kernel_dispatch` in the kernel.
/// With `concreteClass`, objects are instances of that class and dispatch calls it directly.
func implementationSource(
  _ interface: InterfaceDeclaration, symbolPrefix: String, boxBase: String, concreteClass: String? = nil
) -> String {
  var text = "/// What an object must do to be exported as `\(interface.name)`.\n"
  text += "public protocol \(interface.name)Implementation: AnyObject {\n"
  for method in interface.methods {
    text += docComment(method.documentation, indent: "  ")
    let parameters = method.parameters.map { "\($0.name): \(swiftParameterType($0.type))" }.joined(
      separator: ", ")
    let result = swiftResultType(method.result).map { " -> \($0)" } ?? ""
    text += "  func \(method.name)(\(parameters))\(result)\n"
  }
  text += "}\n\n"
  text += """
    /// Holds an exported `\(interface.name)` object for the kernel.
    final class \(interface.name)Box: \(boxBase) {
      let object: any \(interface.name)Implementation
      init(_ object: any \(interface.name)Implementation) { self.object = object }
    }


    """
  for (index, method) in interface.methods.enumerated() {
    let symbol = "\(symbolPrefix)_\(interface.name)_\(index)"
    let words = callWords(method)
    let wordParameters = words.map { ", _ \($0): UInt32" }.joined()
    text += "@_cdecl(\"\(symbol)\")\n"
    text +=
      "public func \(symbol)(_ context: UnsafeMutableRawPointer, _ selector: UInt32\(wordParameters)) -> UInt32 {\n"
    // The kernel's reference keeps the object alive for the call: no retain is needed.
    if let concreteClass {
      text += "  Unmanaged<\(concreteClass)>.fromOpaque(context)._withUnsafeGuaranteedRef { object in\n"
    } else {
      text += "  Unmanaged<\(interface.name)Box>.fromOpaque(context)._withUnsafeGuaranteedRef { box in\n"
      text += "    let object = box.object\n"
    }
    var arguments: [String] = []
    var word = 0
    for parameter in method.parameters {
      switch parameter.type {
      case .word:
        arguments.append("\(parameter.name): UInt(w\(word))")
        word += 1
      case .reference(let name):
        arguments.append("\(parameter.name): \(name)(handle: w\(word))")
        word += 1
      case .block(let direction, _):
        let type = direction == .input ? "UnsafeRawBufferPointer" : "UnsafeMutableRawBufferPointer"
        let pointer = direction == .input ? "UnsafeRawPointer" : "UnsafeMutableRawPointer"
        arguments.append(
          "\(parameter.name): \(type)(start: \(pointer)(bitPattern: UInt(w\(word))), count: Int(w\(word + 1)))"
        )
        word += 2
      }
    }
    let call = "object.\(method.name)(\(arguments.joined(separator: ", ")))"
    switch method.result {
    case .none: text += "    \(call)\n    return 0\n"
    case .word, .filled: text += "    return UInt32(truncatingIfNeeded: \(call))\n"
    case .reference(_, let optional):
      text += optional ? "    return \(call)?.handle ?? 0\n" : "    return \(call).handle\n"
    }
    text += "  }\n}\n\n"
  }
  return text
}

/// The generated Swift file of a server.
public func serverSource(_ server: ServerDeclaration, catalog: InterfaceCatalog) throws -> String {
  let interfaces = try catalog.interfaces(of: server)
  var text = """
    // Generated by `tessera generate` for server \(server.name) from its .server file and the
    // interface files. Do not edit: change the declarations and rebuild.

    import ServerRuntime
    import TesseraABI


    """
  let slots = server.requires.enumerated().map { position, slot in
    (handle: position + 1, interface: catalog.interfaces[slot.interface]!)
  }
  text += boundCallDeclarations(slots)
  for interface in interfaces {
    text += proxySource(
      interface, boundHandles: slots.filter { $0.interface.name == interface.name }.map(\.handle))
  }
  for name in server.implemented {
    let interface = catalog.interfaces[name]!
    let index = interfaces.firstIndex { $0.name == name }!
    let concreteClass = server.implementations[name]
    text += implementationSource(
      interface, symbolPrefix: "tessera_dispatch", boxBase: "ObjectBox", concreteClass: concreteClass)
    let parameter = concreteClass ?? "any \(name)Implementation"
    let boxed = concreteClass == nil ? "\(name)Box(object)" : "object"
    let access = concreteClass == nil ? "public " : ""  // the server's class may be internal
    text += """
      extension \(name) {
        /// Exports `object` as a new `\(name)` reference (count 1) in this server's table;
        /// nil if the kernel has no room. The object lives until the last reference goes.
        \(access)static func export(_ object: \(parameter)) -> \(name)? {
          let handle = exportObject(\(boxed), interfaceIndex: \(index))
          return handle == 0 ? nil : \(name)(handle: handle)
        }
      }


      """
  }
  text += "/// The references this server requires, installed by the kernel when it is loaded.\n"
  text += "public enum Required {\n"
  for (position, slot) in server.requires.enumerated() {
    text += "  /// Slot `\(slot.slot)`.\n"
    text +=
      "  public static var \(slot.slot): \(slot.interface) { \(slot.interface)(handle: \(position + 1)) }\n"
  }
  text += "}\n\n"
  text += """
    @_cdecl("tessera_start")
    public func tessera_start() -> UInt32 {
      start().handle
    }

    """
  return text
}

/// The generated Swift file for interfaces the kernel implements.
public func kernelSource(_ names: [String], catalog: InterfaceCatalog) throws -> String {
  var text = """
    // Generated by `tessera generate-kernel` from the interface files. Do not edit.


    """
  for name in names {
    guard let interface = catalog.interfaces[name] else {
      throw LanguageError(file: "kernel", line: 0, reason: "unknown interface '\(name)'")
    }
    text += "/// A reference to a `\(name)` object, as the kernel's dispatch functions see it.\n"
    text += "public struct \(name) {\n  public let handle: UInt32\n}\n\n"
    text += implementationSource(
      interface, symbolPrefix: "tessera_kernel_dispatch", boxBase: "KernelObjectBox")
    text += "/// The addresses of `\(name)`'s dispatch functions, by method index.\n"
    text += "func \(name.prefix(1).lowercased() + name.dropFirst())DispatchAddresses() -> [UInt] {\n  [\n"
    for (index, method) in interface.methods.enumerated() {
      let words = callWords(method).count
      let type =
        "@convention(c) (UnsafeMutableRawPointer, UInt32" + String(repeating: ", UInt32", count: words)
        + ") -> UInt32"
      text += "    unsafeBitCast(tessera_kernel_dispatch_\(name)_\(index) as \(type), to: UInt.self),\n"
    }
    text += "  ]\n}\n\n"
    text += "/// The descriptor bytes of `\(name)`.\n"
    text +=
      "let \(name.prefix(1).lowercased() + name.dropFirst())Descriptor: [UInt8] = \(interface.descriptor())\n\n"
  }
  text += "/// The descriptors of every interface the kernel knows, for checking references passed to it.\n"
  text +=
    "let kernelInterfaceDescriptors: [[UInt8]] = [\(names.map { $0.prefix(1).lowercased() + $0.dropFirst() + "Descriptor" }.joined(separator: ", "))]\n"
  return text
}

/// The binary manifest of a server (see KernelCore's ServerManifest).
public func manifestBytes(_ server: ServerDeclaration, catalog: InterfaceCatalog) throws -> [UInt8] {
  let interfaces = try catalog.interfaces(of: server)
  func index(_ name: String) -> UInt8 { UInt8(interfaces.firstIndex { $0.name == name }!) }
  var bytes = Array("TSRV".utf8) + [1]
  bytes.append(UInt8(server.name.utf8.count))
  bytes += server.name.utf8
  bytes.append(server.isThreadSafe ? 1 : 0)
  guard interfaces.count <= ServerManifest.maximumInterfaces else {
    throw LanguageError(
      file: server.file, line: 0,
      reason: "uses \(interfaces.count) interfaces; at most \(ServerManifest.maximumInterfaces)")
  }
  bytes.append(UInt8(interfaces.count))
  for interface in interfaces {
    let descriptor = interface.descriptor()
    bytes += [UInt8(descriptor.count & 0xFF), UInt8(descriptor.count >> 8)] + descriptor
  }
  bytes.append(index(server.provides))
  bytes.append(UInt8(server.implemented.count))
  bytes += server.implemented.map(index)
  bytes.append(UInt8(server.requires.count))
  for slot in server.requires {
    bytes.append(UInt8(slot.slot.utf8.count))
    bytes += slot.slot.utf8
    bytes.append(index(slot.interface))
  }
  return bytes
}
