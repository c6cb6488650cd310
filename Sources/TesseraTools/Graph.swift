// Graph: a composition drawn as a Graphviz graph (`tessera graph SYSTEM`).
//
// Contract: `compositionGraph(path:text:)` returns DOT text: one box per instance (its
// name, file and placement; kernel-mode instances, user-mode ones and each shared user
// space grouped in their own cluster), one edge per `bind` line from the instance to what
// it is bound to (another instance, labelled with the slot, or a dashed kernel service),
// and a bold border on the instances a `run` line runs. A malformed line is an error with
// its line number, as in `tessera check`. Instances keep their group's number when a name
// is used again in a later group (`fs#2`).

import Foundation
import KernelCore

/// The composition in `text` (read from `path`, for messages) as DOT.
public func compositionGraph(path: String, text: String) throws -> String {
  let bytes = Array(text.utf8)
  struct Instance {
    var node: String
    var label: String
    var cluster: String
    var runs = false
  }
  var instances: [Instance] = []
  var current: [String: Int] = [:]  // instance name -> index, in the current group
  var edges: [String] = []
  var services: Set<String> = []
  var group = 1
  var lastServer: Int?
  /// `text` for inside DOT's quotes (backslashes first: DOT reads \" and \\ there).
  func escaped(_ text: String) -> String {
    text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
  }
  func quoted(_ text: String) -> String { "\"" + escaped(text) + "\"" }

  try bytes.withUnsafeBufferPointer { buffer in
    func string(_ part: UnsafeBufferPointer<UInt8>) -> String { String(decoding: part, as: UTF8.self) }
    for (line, statement) in Composition(text: buffer) {
      switch statement {
      case .failure(let error):
        throw LanguageError(file: path, line: error.line, reason: error.reason.string)
      case .success(.server(let name, let file, let placement, let restart)):
        let instance = string(name)
        let node = group == 1 ? instance : "\(instance)#\(group)"
        let where_: String
        let cluster: String
        switch placement {
        case .kernel:
          where_ = "kernel mode"
          cluster = "kernel mode"
        case .user:
          where_ = "user mode"
          cluster = "user mode (a space each)"
        case .sharedUser(let space):
          where_ = "user space \(string(space))"
          cluster = "user space \(string(space))"
        }
        // Escaped here: its line breaks (\n) are DOT's own.
        let label = [
          escaped(instance), escaped(string(file)), escaped(where_) + (restart ? ", restart" : ""),
        ]
        .joined(separator: "\\n")
        instances.append(Instance(node: node, label: label, cluster: cluster))
        current[instance] = instances.count - 1
        lastServer = instances.count - 1
      case .success(.bind(let slot, let source)):
        guard let from = lastServer else {
          throw LanguageError(file: path, line: line, reason: "bind without a server line before it")
        }
        let slotName = string(slot)
        switch source {
        case .kernel(let service):
          let target = "kernel.\(string(service))"
          services.insert(target)
          edges.append(
            "  \(quoted(instances[from].node)) -> \(quoted(target)) [label=\(quoted(slotName)), style=dashed];"
          )
        case .none:
          continue  // left empty: no edge
        case .instance(let name):
          let target = current[string(name)].map { instances[$0].node } ?? string(name)
          edges.append("  \(quoted(instances[from].node)) -> \(quoted(target)) [label=\(quoted(slotName))];")
        case .method(let name, let method, _):
          let target = current[string(name)].map { instances[$0].node } ?? string(name)
          edges.append(
            "  \(quoted(instances[from].node)) -> \(quoted(target)) [label=\(quoted("\(slotName) = .\(string(method))()"))];"
          )
        }
      case .success(.limit), .success(.setting):
        continue
      case .success(.run(let name)):
        if let index = current[string(name)] { instances[index].runs = true }
        // The group ends: later lines may reuse its names.
        current = [:]
        lastServer = nil
        group += 1
      }
    }
  }

  let name = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
  var lines = [
    "digraph \(quoted(name)) {", "  rankdir=LR;", "  node [shape=box, fontname=\"Helvetica\"];",
    "  edge [fontname=\"Helvetica\", fontsize=10];",
  ]
  var clusters: [String] = []
  for instance in instances where !clusters.contains(instance.cluster) { clusters.append(instance.cluster) }
  for (index, cluster) in clusters.enumerated() {
    lines.append("  subgraph cluster_\(index) {")
    lines.append("    label=\(quoted(cluster));")
    for instance in instances where instance.cluster == cluster {
      lines.append(
        "    \(quoted(instance.node)) [label=\"\(instance.label)\"\(instance.runs ? ", penwidth=2" : "")];"
      )
    }
    lines.append("  }")
  }
  for service in services.sorted() { lines.append("  \(quoted(service)) [shape=ellipse, style=dashed];") }
  lines += edges
  lines.append("}")
  return lines.joined(separator: "\n") + "\n"
}
