// swift-tools-version: 6.1
// The host side of Tessera: modules shared with the kernel (built here for the host and
// unit-tested), the `tessera` command-line tool, and the host and QEMU system tests.
// The kernel itself is cross-built by the Makefile (see docs/ARCHITECTURE.md).

import PackageDescription

let package = Package(
  name: "Tessera",
  products: [
    .executable(name: "tessera", targets: ["tessera"])
  ],
  targets: [
    // Code that builds both for the host and for Embedded Swift on i686. It must not use
    // Foundation, existentials of non-class protocols, untyped throws or reflection.
    .target(name: "KernelCore", path: "Sources/KernelCore"),
    // The i686 code generators of the call path (the kernel builds them for Embedded Swift
    // too); here so their bytes are unit-tested on the host.
    .target(
      name: "I686CodeGeneration", dependencies: ["KernelCore"], path: "Kernel/Arch/i686/CodeGeneration"),
    // Host-only: the interface language, code generation, server files and compositions.
    .target(name: "TesseraTools", dependencies: ["KernelCore"], path: "Sources/TesseraTools"),
    .executableTarget(
      name: "tessera", dependencies: ["KernelCore", "TesseraTools"], path: "Sources/tessera"),
    // Captures/: real frames the tests parse (read from disk, not resources).
    .testTarget(
      name: "KernelCoreTests", dependencies: ["KernelCore", "I686CodeGeneration"],
      path: "Tests/KernelCoreTests",
      exclude: ["Captures"]),
    .testTarget(
      name: "TesseraToolsTests", dependencies: ["TesseraTools", "KernelCore"], path: "Tests/TesseraToolsTests"
    ),
    .testTarget(name: "SystemTests", dependencies: ["TesseraTools"], path: "Tests/SystemTests"),
  ]
)
