// Inspect: `tessera inspect` (what a server file says about itself) and `tessera check`
// (whether a composition would load), on the host, with the kernel's own validators.

import Foundation
import KernelCore

/// A host string from bytes.
func string(_ bytes: UnsafeBufferPointer<UInt8>) -> String { String(decoding: bytes, as: UTF8.self) }

extension KernelMessage {
  /// The message as a host string.
  public var string: String { withBytes { String(decoding: $0, as: UTF8.self) } }
}

/// A descriptor's method as a signature line.
public func signature(_ method: MethodDescriptor) -> String {
  var parameters: [String] = []
  for parameter in method.parameters {
    switch parameter.kind {
    case .word: parameters.append("word")
    case .reference: parameters.append(string(parameter.interfaceName!))
    case .block:
      let direction =
        parameter.direction! == .input ? "in" : (parameter.direction! == .output ? "out" : "inout")
      parameters.append("\(direction) bytes[\(parameter.maximumSize)]")
    }
  }
  var text = "\(string(method.name))(\(parameters.joined(separator: ", ")))"
  switch method.result {
  case .none: break
  case .word: text += " -> word"
  case .reference: text += " -> \(string(method.resultInterface!))"
  case .optionalReference: text += " -> \(string(method.resultInterface!))?"
  case .filled: text += " -> filled(parameter \(method.filledParameter))"
  }
  return text
}

/// The report of `tessera inspect` for the server file `bytes` called `path`.
public func inspectServerFile(_ bytes: UnsafeRawBufferPointer, path: String) throws -> String {
  let file: ServerFile
  do throws(ServerFileError) {
    file = try ServerFile(bytes: bytes)
  } catch {
    throw LanguageError(file: path, line: 0, reason: "not a valid server file: \(error.message.string)")
  }
  let manifest = file.manifest
  var lines: [String] = []
  lines.append("\(path): server \(string(manifest.name))")
  lines.append(
    "  file: \(bytes.count) bytes; image: \(file.imageSize) bytes; \(manifest.isThreadSafe ? "thread-safe" : "not thread-safe (the kernel serializes calls)")"
  )
  lines.append("  provides: \(string(manifest.interface(manifest.providedInterface).name))")
  lines.append(
    "  exports: "
      + (0..<manifest.exportCount).map { string(manifest.interface(manifest.export($0)).name) }.joined(
        separator: ", "))
  lines.append("  requires:" + (manifest.slotCount == 0 ? " nothing" : ""))
  for slot in 0..<manifest.slotCount {
    let (name, interface) = manifest.slot(slot)
    lines.append("    \(slot + 1). \(string(name)): \(string(manifest.interface(interface).name))")
  }
  lines.append("  interfaces:")
  for index in 0..<manifest.interfaceCount {
    let interface = manifest.interface(index)
    lines.append(
      "    \(string(interface.name)) (digest 0x\(String(interface.digest, radix: 16)), \(interface.bytes.count)-byte descriptor)"
    )
    for method in 0..<interface.methodCount {
      lines.append("      \(method). \(signature(interface.method(method)))")
    }
  }
  var imports: [String] = []
  file.forEachImport { imports.append(string($0)) }
  lines.append("  imports: " + imports.sorted().joined(separator: ", "))
  return lines.joined(separator: "\n") + "\n"
}

/// Checks the composition at `path` against the server files found in `serverDirectories`
/// and the kernel services; returns the problems (empty when it would load cleanly).
public func checkComposition(path: String, serverDirectories: [String], interfaces: InterfaceCatalog) throws
  -> [String]
{
  let text = Array(try readText(path).utf8)
  var problems: [String] = []
  var files: [String: Data] = [:]
  struct Instance {
    var provided: [UInt8]
    var data: Data
  }
  // As in the kernel (SystemLoader): an instance can be bound to once its own lines are
  // done and all its slots bound, and only until the `run` line that ends its group.
  var instances: [String: Instance] = [:]
  // The instance of this group bound to each single-keeper service (kernel.pci).
  var keepers: [String: String] = [:]
  var current: (name: String, data: Data, bound: Set<Int>, line: Int, kernelMode: Bool)?
  var kernelModeServers = 0
  var settingNames: Set<String> = []  // the current server's `set` lines
  // After a `server` line that failed, its bind and limit lines are skipped silently (as
  // the kernel does); with no server line before them at all, they are an error.
  var afterServerLine = false

  func withManifest<T>(_ data: Data, _ body: (ServerManifest) -> T) -> T {
    data.withUnsafeBytes { body(try! ServerFile(bytes: $0).manifest) }
  }
  func finish() {
    guard let pending = current else { return }
    let complete = withManifest(pending.data) { manifest in
      for slot in 0..<manifest.slotCount where !pending.bound.contains(slot) {
        problems.append(
          "\(path):\(pending.line): \(pending.name): slot \(string(manifest.slot(slot).name)) is not bound; not started"
        )
      }
      return pending.bound.count == manifest.slotCount
    }
    if complete {
      instances[pending.name] = Instance(
        provided: withManifest(pending.data) {
          Array(UnsafeRawBufferPointer($0.interface($0.providedInterface).bytes))
        }, data: pending.data)
    } else if pending.kernelMode {
      kernelModeServers -= 1  // the kernel unloads it, giving its heap slot back
    }
    current = nil
  }
  func serverData(_ file: String) -> Data? {
    if let data = files[file] { return data }
    for directory in serverDirectories {
      if let data = FileManager.default.contents(atPath: "\(directory)/\(file)") {
        files[file] = data
        return data
      }
    }
    return nil
  }

  text.withUnsafeBufferPointer { buffer in
    for (line, statement) in Composition(text: buffer) {
      let location = "\(path):\(line)"
      switch statement {
      case .failure(let error):
        problems.append("\(location): \(error.reason.string)")
      case .success(.server(let instanceBytes, let fileBytes, let placement, _)):
        finish()
        afterServerLine = true
        let name = string(instanceBytes)
        let file = string(fileBytes)
        guard instances[name] == nil else {
          problems.append("\(location): instance \(name) is defined twice")
          continue
        }
        guard let data = serverData(file) else {
          problems.append(
            "\(location): \(name): no server file \(file) in \(serverDirectories.joined(separator: ", "))")
          continue
        }
        let valid: String? = data.withUnsafeBytes { raw in
          do throws(ServerFileError) {
            _ = try ServerFile(bytes: raw)
            return nil
          } catch { return error.message.string }
        }
        if let reason = valid {
          problems.append("\(location): \(name): server file \(file) rejected: \(reason)")
          continue
        }
        var kernelMode = false
        if case .kernel = placement {
          guard kernelModeServers < KernelLimits.kernelModeServers else {
            problems.append(
              "\(location): \(name): no heap slot left (at most \(KernelLimits.kernelModeServers) kernel-mode servers)"
            )
            continue
          }
          kernelModeServers += 1
          kernelMode = true
        }
        current = (name, data, [], line, kernelMode)
        settingNames = []
      case .success(.bind(let slotBytes, let source)):
        guard var pending = current else {
          if !afterServerLine { problems.append("\(location): bind without a loaded server before it") }
          continue  // else the server line failed; already reported
        }
        let slotName = string(slotBytes)
        let found: (index: Int, required: [UInt8])? = withManifest(pending.data) { manifest in
          for slot in 0..<manifest.slotCount where string(manifest.slot(slot).name) == slotName {
            return (
              slot, Array(UnsafeRawBufferPointer(manifest.interface(manifest.slot(slot).interface).bytes))
            )
          }
          return nil
        }
        guard let (index, required) = found else {
          problems.append("\(location): \(pending.name) has no slot \(slotName)")
          continue
        }
        guard !pending.bound.contains(index) else {
          problems.append("\(location): slot \(slotName) is bound twice")
          continue
        }
        var provided: [UInt8]?
        var providerData: Data?  // the providing instance's file; nil for a kernel service
        switch source {
        case .kernel(let service):
          let serviceName = string(service)
          guard
            let entry = KernelServiceCatalog.services.first(where: { $0.name.description == serviceName }),
            let interface = interfaces.interfaces[entry.interface.description]
          else {
            let offered = KernelServiceCatalog.services.map { $0.name.description }.joined(separator: ", ")
            problems.append(
              "\(location): the kernel offers no service \(serviceName) (it offers: \(offered))")
            continue
          }
          if entry.singleKeeper {
            if let keeper = keepers[serviceName], keeper != pending.name {
              problems.append(
                "\(location): cannot bind \(pending.name).\(slotName): kernel.\(serviceName) is bound to \(keeper) already, and one server at a time may keep it"
              )
              continue
            }
            keepers[serviceName] = pending.name
          }
          provided = interface.descriptor()
        case .none:
          // Left empty on purpose, as in the kernel: nothing to check.
          pending.bound.insert(index)
          current = pending
          continue
        case .instance(let other):
          provided = instances[string(other)]?.provided
          providerData = instances[string(other)]?.data
          if provided == nil { problems.append("\(location): no loaded instance \(string(other))") }
        case .method(let other, let method, let arguments):
          guard let instance = instances[string(other)] else {
            problems.append("\(location): no loaded instance \(string(other))")
            continue
          }
          providerData = instance.data
          // The same checks as the kernel's, before it would call the method at boot.
          let found: Result<[UInt8], BindingProblem> = withManifest(instance.data) { manifest in
            let interface = manifest.interface(manifest.providedInterface)
            for index in 0..<interface.methodCount
            where string(interface.method(index).name) == string(method) {
              let target = interface.method(index)
              guard target.parameters.allSatisfy({ $0.kind == .word }), let result = target.resultInterface,
                let resultIndex = manifest.interfaceIndex(named: result)
              else {
                return .failure(
                  BindingProblem("\(string(method)) must take only words and return a reference"))
              }
              guard target.parameterCount == arguments.count else {
                return .failure(
                  BindingProblem(
                    "\(string(method)) takes \(target.parameterCount) words; the binding gives \(arguments.count)"
                  ))
              }
              return .success(Array(UnsafeRawBufferPointer(manifest.interface(resultIndex).bytes)))
            }
            return .failure(BindingProblem("\(string(interface.name)) has no method \(string(method))"))
          }
          switch found {
          case .success(let bytes): provided = bytes
          case .failure(let error): problems.append("\(location): \(error.message)")
          }
        }
        guard let provided else { continue }
        // Descriptors the lookups hand out must outlive the comparison: freed after it.
        var storages: [UnsafeMutableRawBufferPointer] = []
        defer { for storage in storages { storage.deallocate() } }
        func descriptor(_ bytes: [UInt8]) -> InterfaceDescriptor {
          let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
          storages.append(storage)
          storage.copyBytes(from: bytes)
          return try! InterfaceDescriptor(bytes: UnsafeRawBufferPointer(storage))
        }
        func lookup(in data: Data?, _ name: UnsafeBufferPointer<UInt8>) -> InterfaceDescriptor? {
          guard let data else {
            return interfaces.interfaces[string(name)].map { descriptor($0.descriptor()) }
          }
          return withManifest(data) { manifest in
            manifest.interfaceIndex(named: name).map {
              descriptor(Array(UnsafeRawBufferPointer(manifest.interface($0).bytes)))
            }
          }
        }
        let problem: String? = required.withUnsafeBytes { requiredBytes in
          provided.withUnsafeBytes { providedBytes in
            let requiredInterface = try! InterfaceDescriptor(bytes: requiredBytes)
            let providedInterface = try! InterfaceDescriptor(bytes: providedBytes)
            guard let difference = requiredInterface.firstDifference(from: providedInterface) else {
              let nested = InterfaceMatching.firstMismatch(
                required: requiredInterface, provided: providedInterface,
                requiredLookup: { lookup(in: pending.data, $0) },
                providedLookup: { lookup(in: providerData, $0) })
              return nested.map {
                "cannot bind \(pending.name).\(slotName): the interface \(string($0)) it uses differs between the two sides"
              }
            }
            let detail =
              difference < 0
              ? "interface names differ"
              : difference < min(requiredInterface.methodCount, providedInterface.methodCount)
                ? "first difference in method \(difference) (\(string(requiredInterface.method(difference).name)))"
                : "they have \(requiredInterface.methodCount) and \(providedInterface.methodCount) methods"
            return
              "cannot bind \(pending.name).\(slotName): it requires \(string(requiredInterface.name)), the source provides \(string(providedInterface.name)): \(detail)"
          }
        }
        // A refused binding leaves the slot unbound, as in the kernel (which then does not
        // start the server).
        if let problem {
          problems.append("\(location): \(problem)")
        } else {
          pending.bound.insert(index)
          current = pending
        }
      case .success(.limit):
        // The reader checked the resource and the value; the kernel applies it.
        if current == nil && !afterServerLine {
          problems.append("\(location): limit without a loaded server before it")
        }
      case .success(.setting(let nameBytes, _)):
        if current == nil {
          if !afterServerLine { problems.append("\(location): set without a loaded server before it") }
        } else if !settingNames.insert(string(nameBytes)).inserted {
          problems.append("\(location): setting \(string(nameBytes)) is set twice")
        }
      case .success(.run(let instanceBytes)):
        finish()
        afterServerLine = false
        // The group ends: the kernel drops its references, and its instances unload.
        defer {
          instances = [:]
          kernelModeServers = 0
          keepers = [:]
        }
        let name = string(instanceBytes)
        guard let instance = instances[name] else {
          problems.append("\(location): no loaded instance \(name) to run")
          continue
        }
        let isProgram = instance.provided.withUnsafeBytes {
          string(try! InterfaceDescriptor(bytes: $0).name) == "Program"
        }
        if !isProgram { problems.append("\(location): \(name) does not provide Program") }
      }
    }
    finish()
  }
  return problems
}

/// Why a binding is refused, as `tessera check` reports it.
private struct BindingProblem: Error {
  var message: String
  init(_ message: String) { self.message = message }
}
