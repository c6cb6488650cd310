// BenchmarkReportTests: `tessera bench-report` refuses failed, missing and malformed
// figures, and judges the targets from the figures.

import Testing

@testable import TesseraTools

@Suite struct BenchmarkReportTests {
  func line(_ name: String, _ instructions: String) -> String {
    "@@BENCH \(name) instructions=\(instructions) total=100 iterations=10"
  }

  @Test func aFailedBenchmarkFailsTheReport() {
    let console = [
      line("function_call", "13.80"), "@@BENCH failed kernel_call_bound: invalidHandle (status 1)",
    ]
    .joined(separator: "\n")
    #expect(throws: LanguageError.self) { try benchmarkResults(fromConsole: console, file: "log") }
    do {
      _ = try benchmarkResults(fromConsole: console, file: "log")
    } catch let error as LanguageError {
      #expect(error.reason.contains("kernel_call_bound: invalidHandle"))
    } catch { Issue.record("\(error)") }
  }

  @Test func aMissingOrUnknownFigureFailsTheReport() throws {
    let results = try benchmarkResults(
      fromConsole: [line("function_call", "13.80"), line("surprise", "1.00")].joined(separator: "\n"),
      file: "log")
    #expect(throws: LanguageError.self) {
      try checkExpectedFigures(results, expected: ["function_call", "kernel_call_bound"], file: "log")
    }
    #expect(throws: LanguageError.self) {
      try checkExpectedFigures(results, expected: ["function_call"], file: "log")
    }
    try checkExpectedFigures(
      results, expected: ["function_call", "surprise"], file: "log")
  }

  @Test func targetsAreJudgedFromTheFigures() throws {
    let results = try benchmarkResults(
      fromConsole: [
        line("function_call", "10.00"), line("kernel_call_bound", "25.00"), line("thread_switch", "500.00"),
      ]
      .joined(separator: "\n"), file: "log")
    let judged = try judgeTargets(
      results,
      targets: [
        BenchmarkTarget(figure: "kernel_call_bound", relativeTo: "function_call", limit: 2.0),
        BenchmarkTarget(figure: "kernel_call_bound", relativeTo: "function_call", limit: 2.5),
        BenchmarkTarget(figure: "thread_switch", relativeTo: nil, limit: 400),
      ], file: "log")
    #expect(judged.map(\.met) == [false, true, false])
    #expect(judged.map(\.value) == [2.5, 2.5, 500])
    #expect(throws: LanguageError.self) {
      try judgeTargets(
        results, targets: [BenchmarkTarget(figure: "absent", relativeTo: nil, limit: 1)], file: "log")
    }
    let json = benchmarkJSON(results, targets: judged)
    #expect(json.contains("\"met\": false") && json.contains("\"relative_to\": \"function_call\""))
  }
}
