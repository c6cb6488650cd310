// BenchmarkReport: turns the `@@BENCH name instructions=N.NN total=T iterations=I` lines a
// benchmark run prints into a table, the targets met or missed, and
// `build/bench/results.json`.
//
// Contract: `benchmarkResults` fails on a `@@BENCH failed NAME: WHY` line (a measured call
// returned an error, or its answer was wrong) and on a malformed line;
// `checkExpectedFigures` fails when a figure of `expectedBenchmarkFigures` is missing or an
// unknown one appears. The targets are the issues' (docs/BENCHMARKS.md); a missed target
// is reported, not an error: the figures are what they are.

/// One measured figure.
public struct BenchmarkResult: Equatable, Sendable {
  /// The figure's name (a key of results.json).
  public var name: String
  /// Guest instructions per operation, the empty loop subtracted (except for the loop itself).
  public var instructions: Double
  /// Instructions for all iterations.
  public var total: Int
  /// Operations measured.
  public var iterations: Int
}

/// Every figure `systems/bench.system` prints.
public let expectedBenchmarkFigures: Set<String> = {
  var names: Set<String> = [
    "empty_loop", "function_call", "kernel_call_bound", "kernel_call_reference", "locked_kernel_call_bound",
    "reference_acquire_release", "reference_export_release_destroy", "kernel_to_user_call_bound",
    "kernel_to_locked_user_call_bound", "thread_switch", "thread_switch_handoff", "semaphore_signal_wait",
    "null_syscall",
    "inter_as_call_bound", "user_to_kernel_call_bound",
  ]
  for placement in ["kernel", "user"] {
    for kind in ["in_64", "out_4096", "reference"] { names.insert("marshaled_\(kind)_\(placement)") }
  }
  for size in ["60", "1514"] {
    for label in ["c_kernel", "c_user", "cplus_kernel", "cplus_user"] {
      for kind in ["send", "receive", "receive_shared"] { names.insert("net_\(kind)_\(size)_\(label)") }
    }
    for placement in ["kernel", "user"] {
      for kind in ["copy", "batch16", "shared"] { names.insert("frames_\(kind)_\(size)_\(placement)") }
    }
  }
  for size in ["64", "1472"] {
    for placement in ["kernel", "user"] {
      for kind in ["echo", "udp"] { names.insert("stack_\(kind)_\(size)_\(placement)") }
    }
  }
  return names
}()

/// The results in the console log, in order; an error if there are none, if a line is
/// malformed, or if a benchmark reported a failure.
public func benchmarkResults(fromConsole text: String, file: String) throws -> [BenchmarkResult] {
  var results: [BenchmarkResult] = []
  var failures: [String] = []
  for line in text.split(whereSeparator: \.isNewline) {
    guard let range = line.range(of: "@@BENCH ") else { continue }
    let rest = line[range.upperBound...]
    if rest.hasPrefix("failed ") {
      failures.append(String(rest.dropFirst("failed ".count)))
      continue
    }
    let fields = rest.split(separator: " ")
    guard fields.count == 4 else {
      throw LanguageError(file: file, line: 0, reason: "malformed benchmark line: \(line)")
    }
    func value(_ key: String) -> Substring? {
      fields.first { $0.hasPrefix(key + "=") }.map { $0.dropFirst(key.count + 1) }
    }
    guard let instructions = value("instructions").flatMap({ Double($0) }),
      let total = value("total").flatMap({ Int($0) }),
      let iterations = value("iterations").flatMap({ Int($0) })
    else { throw LanguageError(file: file, line: 0, reason: "malformed benchmark line: \(line)") }
    results.append(
      BenchmarkResult(
        name: String(fields[0]), instructions: instructions, total: total, iterations: iterations))
  }
  guard failures.isEmpty else {
    throw LanguageError(
      file: file, line: 0,
      reason: "\(failures.count) benchmarks failed:\n  " + failures.joined(separator: "\n  "))
  }
  guard !results.isEmpty else {
    throw LanguageError(
      file: file, line: 0, reason: "no @@BENCH lines: the benchmark did not run (see the log)")
  }
  return results
}

/// Throws unless `results` has exactly the figures of `expected`, each measured at least once.
public func checkExpectedFigures(
  _ results: [BenchmarkResult], expected: Set<String> = expectedBenchmarkFigures, file: String
) throws {
  let names = Set(results.map(\.name))
  let missing = expected.subtracting(names).sorted()
  let unknown = names.subtracting(expected).sorted()
  guard missing.isEmpty && unknown.isEmpty else {
    throw LanguageError(
      file: file, line: 0,
      reason:
        "benchmark figures missing: \(missing.joined(separator: ", ")); unknown: \(unknown.joined(separator: ", "))"
    )
  }
  for result in results where result.iterations <= 0 || result.total <= 0 {
    throw LanguageError(file: file, line: 0, reason: "figure \(result.name) measured nothing")
  }
}

/// A target from the issues: `figure` at most `limit` times `relativeTo` (or at most
/// `limit` instructions when `relativeTo` is nil).
public struct BenchmarkTarget: Equatable, Sendable {
  /// The figure judged.
  public var figure: String
  /// The figure it is compared with, if any.
  public var relativeTo: String?
  /// The most allowed: a ratio, or instructions.
  public var limit: Double

  /// What the target says, in words.
  public var description: String {
    relativeTo.map { "\(figure) <= \(format2(limit)) x \($0)" }
      ?? "\(figure) <= \(format2(limit)) instructions"
  }
}

/// The targets of issue 14 (the call path) and issue 5 (user mode).
public let benchmarkTargets: [BenchmarkTarget] = [
  BenchmarkTarget(figure: "kernel_call_bound", relativeTo: "function_call", limit: 2.0),
  BenchmarkTarget(figure: "kernel_call_reference", relativeTo: "function_call", limit: 2.5),
  BenchmarkTarget(figure: "locked_kernel_call_bound", relativeTo: "kernel_call_bound", limit: 1.5),
  BenchmarkTarget(figure: "reference_acquire_release", relativeTo: "kernel_call_bound", limit: 1.0),
  BenchmarkTarget(figure: "reference_export_release_destroy", relativeTo: "kernel_call_bound", limit: 1.0),
  BenchmarkTarget(figure: "thread_switch_handoff", relativeTo: nil, limit: 400),
  BenchmarkTarget(figure: "inter_as_call_bound", relativeTo: nil, limit: 150),
  BenchmarkTarget(figure: "inter_as_call_bound", relativeTo: "null_syscall", limit: 3.0),
]

/// A target judged against the results: the value (a ratio, or instructions) and whether
/// it is met; nil if a figure it needs is missing.
public struct JudgedTarget: Equatable {
  /// The target.
  public var target: BenchmarkTarget
  /// The measured ratio or instructions.
  public var value: Double
  /// Whether `value` is within the limit.
  public var met: Bool
}

/// Judges every target against `results`; throws if a figure a target needs is missing.
public func judgeTargets(
  _ results: [BenchmarkResult], targets: [BenchmarkTarget] = benchmarkTargets, file: String
) throws -> [JudgedTarget] {
  func figure(_ name: String) throws -> Double {
    guard let result = results.first(where: { $0.name == name }) else {
      throw LanguageError(file: file, line: 0, reason: "a target needs figure \(name), which is missing")
    }
    return result.instructions
  }
  return try targets.map { target in
    var value = try figure(target.figure)
    if let base = target.relativeTo { value /= max(try figure(base), 0.01) }
    return JudgedTarget(target: target, value: value, met: value <= target.limit)
  }
}

/// A text table with each figure and its ratio to the plain function call, then the
/// targets, each met or not.
public func benchmarkTable(_ results: [BenchmarkResult], targets: [JudgedTarget] = []) -> String {
  let function = results.first { $0.name == "function_call" }?.instructions
  var lines = ["figure                                instructions/op   x function call"]
  for result in results {
    let ratio =
      function.map { $0 > 0 && result.name != "empty_loop" ? String(format2(result.instructions / $0)) : "-" }
      ?? "-"
    lines.append(
      result.name.padding(38) + format2(result.instructions).leftPadding(16) + ratio.leftPadding(18))
  }
  if !targets.isEmpty {
    lines.append("")
    lines.append("targets")
    for judged in targets {
      lines.append(
        "  " + judged.target.description.padding(62) + format2(judged.value).leftPadding(10)
          + (judged.met ? "   met" : "   NOT MET"))
    }
  }
  return lines.joined(separator: "\n")
}

/// `{"figures": {"name": {"instructions": N, ...}, ...}, "targets": [...]}`.
public func benchmarkJSON(_ results: [BenchmarkResult], targets: [JudgedTarget] = []) -> String {
  let entries = results.map {
    "    \"\($0.name)\": {\"instructions\": \(format2($0.instructions)), \"total\": \($0.total), \"iterations\": \($0.iterations)}"
  }
  let judged = targets.map { judged in
    let base = judged.target.relativeTo.map { "\"\($0)\"" } ?? "null"
    return
      "    {\"figure\": \"\(judged.target.figure)\", \"relative_to\": \(base), \"limit\": \(format2(judged.target.limit)), \"value\": \(format2(judged.value)), \"met\": \(judged.met)}"
  }
  return "{\n  \"figures\": {\n" + entries.joined(separator: ",\n") + "\n  },\n  \"targets\": [\n"
    + judged.joined(separator: ",\n") + "\n  ]\n}\n"
}

func format2(_ value: Double) -> String {
  let hundredths = Int((value * 100).rounded())
  let fraction = abs(hundredths % 100)
  return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
}

extension String {
  func padding(_ width: Int) -> String { self + String(repeating: " ", count: max(0, width - count)) }
  func leftPadding(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}
