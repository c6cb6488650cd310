// Files: reading the repository's declaration files from disk.

import Foundation

/// Every interface declared in the `.tif` files of `directory`.
public func loadInterfaces(directory: String) throws -> InterfaceCatalog {
  let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".tif") }
    .sorted()
  var declarations: [InterfaceDeclaration] = []
  for name in names {
    let path = "\(directory)/\(name)"
    declarations += try parseInterfaces(try readText(path), file: path)
  }
  return try InterfaceCatalog(declarations)
}

/// The catalog a server is built against: `Interfaces/` plus any `.tif` files in the
/// server's own folder, which replace interfaces of the same name.
public func loadInterfaces(directory: String, server serverFile: String) throws -> InterfaceCatalog {
  let catalog = try loadInterfaces(directory: directory)
  let folder = (serverFile as NSString).deletingLastPathComponent
  let local =
    (try? FileManager.default.contentsOfDirectory(atPath: folder))?.filter { $0.hasSuffix(".tif") }.sorted()
    ?? []
  var declarations: [InterfaceDeclaration] = []
  for name in local {
    let path = "\(folder)/\(name)"
    declarations += try parseInterfaces(try readText(path), file: path)
  }
  return declarations.isEmpty ? catalog : try catalog.overriding(with: declarations)
}

/// The contents of a text file, or a `LanguageError` saying why it cannot be read.
public func readText(_ path: String) throws -> String {
  String(decoding: try readData(path), as: UTF8.self)
}

/// The contents of a file, or a `LanguageError` saying why it cannot be read: no such
/// file, a directory, or not readable.
public func readData(_ path: String) throws -> Data {
  var isDirectory: ObjCBool = false
  guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
    throw LanguageError(file: path, line: 0, reason: "cannot read the file: there is no such file")
  }
  if isDirectory.boolValue {
    throw LanguageError(file: path, line: 0, reason: "cannot read the file: it is a directory")
  }
  guard let data = FileManager.default.contents(atPath: path) else {
    throw LanguageError(file: path, line: 0, reason: "cannot read the file: permission denied")
  }
  return data
}

/// Writes `contents` to `path`, creating its folder; a `LanguageError` saying why not.
public func writeFile(_ path: String, _ contents: Data) throws {
  let folder = (path as NSString).deletingLastPathComponent
  var isDirectory: ObjCBool = false
  if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
    throw LanguageError(file: path, line: 0, reason: "cannot write the file: it is a directory")
  }
  do {
    if !folder.isEmpty {
      try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }
    try contents.write(to: URL(fileURLWithPath: path))
  } catch {
    throw LanguageError(file: path, line: 0, reason: "cannot write the file: \(error.localizedDescription)")
  }
}
