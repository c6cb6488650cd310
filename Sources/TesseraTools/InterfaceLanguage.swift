// InterfaceLanguage: the parser of Tessera's interface files (`Interfaces/*.tif`) and
// server declarations (`Servers/NAME/NAME.server`), and their encoding as descriptors.
//
// Contract: `parseInterfaces` and `parseServer` either return the declarations or throw
// a `LanguageError` naming the file, line and what was expected. The grammar:
//
//   file      := (doc* "interface" Name "{" method* "}")*
//   method    := doc* "func" name "(" (param ("," param)*)? ")" ("->" result)?
//   param     := name ":" ("word" | Interface | ("in" | "out" | "inout") "bytes" "[" N "]")
//   result    := "word" | Interface | Interface "?" | "filled" "(" param-name ")"
//   server    := doc* "server" Name ":" Interface "{" entry* "}"
//   entry     := "requires" slot ":" Interface | "exports" Interface ("," Interface)*
//              | "threadsafe" | "implements" Interface "with" Class
//
// `implements I with C` says every exported I is an instance of the final class C: the
// generated dispatch then calls C's methods directly instead of through the protocol
// (the fastest call path; see docs/BENCHMARKS.md).
//
// `doc` lines start with `///`; `//` comments are ignored.

import KernelCore

/// A parse or validation error with its location.
public struct LanguageError: Error, CustomStringConvertible, Equatable {
  /// The file.
  public var file: String
  /// The 1-based line, or 0 when the error concerns the whole file.
  public var line: Int
  /// What is wrong.
  public var reason: String
  /// An error at `line` of `file` (0 for the whole file).
  public init(file: String, line: Int, reason: String) {
    self.file = file
    self.line = line
    self.reason = reason
  }

  /// `file:line: reason`.
  public var description: String { line > 0 ? "\(file):\(line): \(reason)" : "\(file): \(reason)" }
}

/// A parameter type in an interface file.
public enum ParameterType: Equatable {
  case word
  case reference(String)
  case block(BlockDirection, maximum: UInt32)
}

/// A result type in an interface file.
public enum ResultType: Equatable {
  case none
  case word
  case reference(String, optional: Bool)
  case filled(String)
}

/// One method as written.
public struct MethodDeclaration: Equatable {
  /// The method's name.
  public var name: String
  /// Its `///` lines.
  public var documentation: [String]
  /// Parameters in order.
  public var parameters: [(name: String, type: ParameterType)]
  /// The result.
  public var result: ResultType

  /// Equal names, parameters and results.
  public static func == (left: Self, right: Self) -> Bool {
    left.name == right.name && left.result == right.result
      && left.parameters.map(\.name) == right.parameters.map(\.name)
      && left.parameters.map(\.type) == right.parameters.map(\.type)
  }
}

/// One interface as written.
public struct InterfaceDeclaration: Equatable {
  /// The interface's name.
  public var name: String
  /// Its `///` lines.
  public var documentation: [String]
  /// Methods in order.
  public var methods: [MethodDeclaration]
  /// Where it was declared, for messages.
  public var file: String
  /// The line of its `interface` keyword (0 if not from a file).
  public var line: Int = 0

  /// The canonical descriptor bytes (see KernelCore's InterfaceDescriptor).
  public func descriptor() -> [UInt8] {
    var bytes: [UInt8] = []
    func name(_ text: String) {
      bytes.append(UInt8(text.utf8.count))
      bytes += text.utf8
    }
    name(self.name)
    bytes.append(UInt8(methods.count))
    for method in methods {
      name(method.name)
      bytes.append(UInt8(method.parameters.count))
      for parameter in method.parameters {
        switch parameter.type {
        case .word: bytes.append(ParameterKind.word.rawValue)
        case .reference(let interface):
          bytes.append(ParameterKind.reference.rawValue)
          name(interface)
        case .block(let direction, let maximum):
          bytes.append(ParameterKind.block.rawValue)
          bytes.append(direction.rawValue)
          withUnsafeBytes(of: maximum.littleEndian) { bytes += $0 }
        }
      }
      switch method.result {
      case .none: bytes.append(ResultKind.none.rawValue)
      case .word: bytes.append(ResultKind.word.rawValue)
      case .reference(let interface, let optional):
        bytes.append(optional ? ResultKind.optionalReference.rawValue : ResultKind.reference.rawValue)
        name(interface)
      case .filled(let parameter):
        bytes.append(ResultKind.filled.rawValue)
        bytes.append(UInt8(method.parameters.firstIndex { $0.name == parameter }!))
      }
    }
    return bytes
  }

  /// The interfaces this one names in its signatures.
  public var referencedInterfaces: [String] {
    var names: [String] = []
    for method in methods {
      for parameter in method.parameters {
        if case .reference(let interface) = parameter.type { names.append(interface) }
      }
      if case .reference(let interface, _) = method.result { names.append(interface) }
    }
    return names
  }
}

/// A server declaration as written.
public struct ServerDeclaration: Equatable {
  /// The server's name.
  public var name: String
  /// Its `///` lines.
  public var documentation: [String]
  /// The interface of the server's main object.
  public var provides: String
  /// Further interfaces whose objects the server creates.
  public var exports: [String]
  /// Required slots in order.
  public var requires: [(slot: String, interface: String)]
  /// Whether the kernel may let several threads in at once.
  public var isThreadSafe: Bool
  /// Where it was declared, for messages.
  public var file: String
  /// The line of its `interface` keyword (0 if not from a file).
  public var line: Int = 0
  /// Interfaces whose objects are all instances of one named class.
  public var implementations: [String: String] = [:]

  /// Equal declarations.
  public static func == (left: Self, right: Self) -> Bool {
    left.name == right.name && left.provides == right.provides && left.exports == right.exports
      && left.requires.map(\.slot) == right.requires.map(\.slot)
      && left.requires.map(\.interface) == right.requires.map(\.interface)
      && left.isThreadSafe == right.isThreadSafe && left.implementations == right.implementations
  }

  /// Every interface the server implements: the provided one first.
  public var implemented: [String] { [provides] + exports.filter { $0 != provides } }
}

/// Splits source text into tokens with line numbers.
struct Lexer {
  enum Token: Equatable {
    case identifier(String)
    case number(UInt64)
    case symbol(String)
    case documentation(String)
  }

  static func tokens(of text: String, file: String) throws -> [(token: Token, line: Int)] {
    var result: [(Token, Int)] = []
    for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let line = number + 1
      var characters = Substring(rawLine)
      while let first = characters.first {
        if first == " " || first == "\t" || first == "\r" {
          characters = characters.dropFirst()
        } else if characters.hasPrefix("///") {
          result.append((.documentation(characters.dropFirst(3).trimmingSpaces()), line))
          break
        } else if characters.hasPrefix("//") {
          break
        } else if characters.hasPrefix("->") {
          result.append((.symbol("->"), line))
          characters = characters.dropFirst(2)
        } else if first.isLetter || first == "_" {
          let name = characters.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
          result.append((.identifier(String(name)), line))
          characters = characters.dropFirst(name.count)
        } else if first.isNumber {
          let digits = characters.prefix { $0.isNumber || $0 == "_" }
          guard let value = UInt64(digits.filter { $0 != "_" }) else {
            throw LanguageError(file: file, line: line, reason: "number '\(digits)' is too large")
          }
          result.append((.number(value), line))
          characters = characters.dropFirst(digits.count)
        } else if "{}()[],:?".contains(first) {
          result.append((.symbol(String(first)), line))
          characters = characters.dropFirst()
        } else {
          throw LanguageError(file: file, line: line, reason: "unexpected character '\(first)'")
        }
      }
    }
    return result
  }
}

extension Substring {
  func trimmingSpaces() -> String {
    String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
  }
}

/// A cursor over tokens with expectation helpers.
struct Parser {
  let tokens: [(token: Lexer.Token, line: Int)]
  let file: String
  var position = 0

  var atEnd: Bool { position >= tokens.count }
  var line: Int { atEnd ? (tokens.last?.line ?? 0) : tokens[position].line }

  func error(_ reason: String, line: Int? = nil) -> LanguageError {
    LanguageError(file: file, line: line ?? self.line, reason: reason)
  }

  mutating func documentation() -> [String] {
    var lines: [String] = []
    while !atEnd, case .documentation(let text) = tokens[position].token {
      lines.append(text)
      position += 1
    }
    return lines
  }

  mutating func identifier(_ what: String) throws -> String {
    guard !atEnd, case .identifier(let name) = tokens[position].token else { throw error("expected \(what)") }
    position += 1
    return name
  }

  mutating func keyword(_ word: String) throws {
    guard try identifier("'\(word)'") == word else {
      position -= 1
      throw error("expected '\(word)'")
    }
  }

  mutating func symbol(_ symbol: String) throws {
    guard !atEnd, tokens[position].token == .symbol(symbol) else { throw error("expected '\(symbol)'") }
    position += 1
  }

  mutating func takeSymbol(_ symbol: String) -> Bool {
    guard !atEnd, tokens[position].token == .symbol(symbol) else { return false }
    position += 1
    return true
  }

  func peekIdentifier() -> String? {
    guard !atEnd, case .identifier(let name) = tokens[position].token else { return nil }
    return name
  }

  mutating func number(_ what: String) throws -> UInt64 {
    guard !atEnd, case .number(let value) = tokens[position].token else { throw error("expected \(what)") }
    position += 1
    return value
  }
}

/// Parses every interface in `text`.
public func parseInterfaces(_ text: String, file: String) throws -> [InterfaceDeclaration] {
  var parser = Parser(tokens: try Lexer.tokens(of: text, file: file), file: file)
  var interfaces: [InterfaceDeclaration] = []
  while true {
    let documentation = parser.documentation()
    if parser.atEnd { break }
    try parser.keyword("interface")
    let interfaceLine = parser.line
    let name = try parser.identifier("an interface name")
    try checkName(name, parser)
    try parser.symbol("{")
    var methods: [MethodDeclaration] = []
    while !parser.takeSymbol("}") {
      let methodDocumentation = parser.documentation()
      if parser.takeSymbol("}") { break }
      let methodLine = parser.line
      try parser.keyword("func")
      let methodName = try parser.identifier("a method name")
      try checkName(methodName, parser)
      guard !methods.contains(where: { $0.name == methodName }) else {
        throw parser.error("method '\(methodName)' is declared twice")
      }
      try parser.symbol("(")
      var parameters: [(name: String, type: ParameterType)] = []
      if !parser.takeSymbol(")") {
        repeat {
          let parameterName = try parser.identifier("a parameter name")
          try checkName(parameterName, parser, parameter: true)
          guard !parameters.contains(where: { $0.name == parameterName }) else {
            throw parser.error("parameter '\(parameterName)' of '\(methodName)' is declared twice")
          }
          try parser.symbol(":")
          let word = try parser.identifier("a parameter type")
          switch word {
          case "word": parameters.append((parameterName, .word))
          case "in", "out", "inout":
            try parser.keyword("bytes")
            try parser.symbol("[")
            let maximum = try parser.number("the block's maximum size")
            guard maximum > 0, maximum <= UInt64(InterfaceDescriptor.maximumBlockSize) else {
              throw parser.error(
                "a block's maximum must be 1 to \(InterfaceDescriptor.maximumBlockSize) bytes")
            }
            try parser.symbol("]")
            let direction: BlockDirection = word == "in" ? .input : (word == "out" ? .output : .inputOutput)
            parameters.append((parameterName, .block(direction, maximum: UInt32(maximum))))
          default:
            try checkName(word, parser)
            parameters.append((parameterName, .reference(word)))
          }
        } while parser.takeSymbol(",")
        try parser.symbol(")")
      }
      var result = ResultType.none
      if parser.takeSymbol("->") {
        let word = try parser.identifier("a result type")
        if word == "word" {
          result = .word
        } else if word == "filled" {
          try parser.symbol("(")
          let target = try parser.identifier("the name of an out block parameter")
          try parser.symbol(")")
          guard let parameter = parameters.first(where: { $0.name == target }),
            case .block(let direction, _) = parameter.type, direction.copiesOut
          else {
            throw parser.error(
              "'filled(\(target))' must name an out or inout bytes parameter", line: methodLine)
          }
          result = .filled(target)
        } else {
          result = .reference(word, optional: parser.takeSymbol("?"))
        }
      }
      let words = parameters.reduce(0) { count, parameter in
        if case .block = parameter.type { return count + 2 }
        return count + 1
      }
      guard words <= InterfaceDescriptor.maximumCallWords else {
        throw parser.error(
          "'\(methodName)' takes \(words) call words; at most \(InterfaceDescriptor.maximumCallWords) (a block counts 2)",
          line: methodLine)
      }
      methods.append(
        MethodDeclaration(
          name: methodName, documentation: methodDocumentation, parameters: parameters, result: result))
    }
    guard methods.count < 256 else { throw parser.error("interface '\(name)' has more than 255 methods") }
    interfaces.append(
      InterfaceDeclaration(
        name: name, documentation: documentation, methods: methods, file: file, line: interfaceLine))
  }
  return interfaces
}

/// Parses one server declaration.
public func parseServer(_ text: String, file: String) throws -> ServerDeclaration {
  var parser = Parser(tokens: try Lexer.tokens(of: text, file: file), file: file)
  let documentation = parser.documentation()
  try parser.keyword("server")
  let name = try parser.identifier("the server's name")
  try checkName(name, parser)
  try parser.symbol(":")
  let provides = try parser.identifier("the provided interface")
  try parser.symbol("{")
  var server = ServerDeclaration(
    name: name, documentation: documentation, provides: provides, exports: [], requires: [],
    isThreadSafe: false, file: file)
  while !parser.takeSymbol("}") {
    _ = parser.documentation()
    if parser.takeSymbol("}") { break }
    switch try parser.identifier("'requires', 'exports', 'implements' or 'threadsafe'") {
    case "requires":
      let slot = try parser.identifier("a slot name")
      try checkName(slot, parser)
      guard !server.requires.contains(where: { $0.slot == slot }) else {
        throw parser.error("slot '\(slot)' is declared twice")
      }
      try parser.symbol(":")
      server.requires.append((slot, try parser.identifier("an interface name")))
    case "exports":
      repeat {
        server.exports.append(try parser.identifier("an interface name"))
      } while parser.takeSymbol(",")
    case "threadsafe": server.isThreadSafe = true
    case "implements":
      let interface = try parser.identifier("an interface name")
      try parser.keyword("with")
      server.implementations[interface] = try parser.identifier("a class name")
    case let other:
      throw parser.error(
        "unknown entry '\(other)'; expected 'requires', 'exports', 'implements' or 'threadsafe'")
    }
  }
  guard parser.atEnd else { throw parser.error("unexpected text after the server declaration") }
  return server
}

/// Refuses a name that is too long or reserved: the language's own words (not for
/// parameters, where the position tells them apart), Swift's keywords (the generated code
/// must compile), and `handle`, the generated reference types' own property.
private func checkName(_ name: String, _ parser: Parser, parameter: Bool = false) throws {
  guard name.utf8.count <= InterfaceDescriptor.maximumNameLength else {
    throw parser.error("name '\(name)' is longer than \(InterfaceDescriptor.maximumNameLength) characters")
  }
  let language: Set = ["word", "bytes", "in", "out", "inout", "filled", "func", "interface", "server"]
  // Also the types generated code names, which an interface of that name would shadow.
  let swift: Set = [
    "in", "Int", "UInt", "UInt8", "UInt16", "UInt32", "UInt64", "Int32", "Bool", "Void", "String", "Never",
    "Optional", "Array", "Required", "CallError", "ObjectBox", "InterfaceReference", "KernelMessage",
    "UnsafeRawBufferPointer", "UnsafeMutableRawBufferPointer", "UnsafeMutableRawPointer", "UnsafeRawPointer",
    "handle", "self", "Self", "class", "struct", "enum", "protocol", "extension", "let", "var", "return",
    "if",
    "else", "for", "while", "repeat", "switch", "case", "default", "break", "continue", "import", "init",
    "deinit", "subscript", "throws", "throw", "try", "catch", "do", "is", "as", "nil", "true", "false",
    "static", "public", "private", "internal", "fileprivate", "open", "where", "guard", "defer", "operator",
    "associatedtype", "typealias", "some", "any", "Type", "super", "rethrows", "func", "inout",
  ]
  guard !swift.contains(name), parameter || !language.contains(name) else {
    throw parser.error("'\(name)' is a reserved word")
  }
}
