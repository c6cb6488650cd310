// BenchmarkReport: turns the `@@BENCH name instructions=N.NN total=T iterations=I` lines a
// benchmark run prints into a table and `build/bench/results.json`.

/// One measured figure.
public struct BenchmarkResult: Equatable {
  /// The figure's name (a key of results.json).
  public var name: String
  /// Guest instructions per operation, the empty loop subtracted (except for the loop itself).
  public var instructions: Double
  /// Instructions for all iterations.
  public var total: Int
  /// Operations measured.
  public var iterations: Int
}

/// The results in the console log, in order; an error if there are none.
public func benchmarkResults(fromConsole text: String, file: String) throws -> [BenchmarkResult] {
  var results: [BenchmarkResult] = []
  for line in text.split(whereSeparator: \.isNewline) {
    guard let range = line.range(of: "@@BENCH ") else { continue }
    let fields = line[range.upperBound...].split(separator: " ")
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
  guard !results.isEmpty else {
    throw LanguageError(
      file: file, line: 0, reason: "no @@BENCH lines: the benchmark did not run (see the log)")
  }
  return results
}

/// A text table with each figure and its ratio to the plain function call.
public func benchmarkTable(_ results: [BenchmarkResult]) -> String {
  let function = results.first { $0.name == "function_call" }?.instructions
  var lines = ["figure                                instructions/op   x function call"]
  for result in results {
    let ratio =
      function.map { $0 > 0 && result.name != "empty_loop" ? String(format2(result.instructions / $0)) : "-" }
      ?? "-"
    lines.append(
      result.name.padding(38) + format2(result.instructions).leftPadding(16) + ratio.leftPadding(18))
  }
  if let call = results.first(where: { $0.name == "inter_as_call" })?.instructions,
    let null = results.first(where: { $0.name == "null_syscall" })?.instructions, null > 0
  {
    lines.append("inter_as_call / null_syscall = \(format2(call / null)) (target: at most 3)")
  }
  return lines.joined(separator: "\n")
}

/// `{"name": {"instructions": N}, ...}` with the run's totals alongside.
public func benchmarkJSON(_ results: [BenchmarkResult]) -> String {
  let entries = results.map {
    "  \"\($0.name)\": {\"instructions\": \(format2($0.instructions)), \"total\": \($0.total), \"iterations\": \($0.iterations)}"
  }
  return "{\n" + entries.joined(separator: ",\n") + "\n}\n"
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
