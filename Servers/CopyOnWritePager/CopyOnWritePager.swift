// CopyOnWritePager: a region that starts as a shared template and gets a private copy of
// a page only when it is written. The template is `templatePages` pages of memory this
// server fills (page i holds the word 0xC0DE_0000 + i everywhere). A read fault maps the
// template page itself (read-only: the kernel maps writable only for writes); a write
// fault copies it into a new page, once, and maps that.

import ServerRuntime

let templatePages = 8

final class CopyOnWrite: PagerImplementation, PagerControlImplementation {
  private var template: [Memory] = []
  private var templateAddresses: [UInt] = []
  private var copied: [Memory?] = []
  private var copyCount: UInt = 0
  private var exported: Pager?

  init() {
    for index in 0..<templatePages {
      guard let page = try? Required.memory.allocate(bytes: 4096),
        let address = try? Required.memory.map(memory: page, writable: 1), address != 0
      else { fatalError("no memory for the template") }
      let words = UnsafeMutablePointer<UInt32>(bitPattern: address)!
      for word in 0..<1024 { words[word] = 0xC0DE_0000 &+ UInt32(index) }
      template.append(page)
      templateAddresses.append(address)
      copied.append(nil)
    }
  }

  func fault(offset: UInt, write: UInt) -> Memory? {
    let index = Int(offset / 4096)
    guard index < templatePages else { return nil }
    if write == 1 && copied[index] == nil {
      guard let page = try? Required.memory.allocate(bytes: 4096),
        let address = try? Required.memory.map(memory: page, writable: 1), address != 0
      else { return nil }
      UnsafeMutableRawPointer(bitPattern: address)!.copyMemory(
        from: UnsafeRawPointer(bitPattern: templateAddresses[index])!, byteCount: 4096)
      _ = try? Required.memory.unmap(address: address)
      copied[index] = page
      copyCount += 1
    }
    // Returning a reference hands one count to the caller; keep ours.
    let page = copied[index] ?? template[index]
    guard (try? page.acquire()) != nil else { return nil }
    return page
  }

  func pager() -> Pager {
    if exported == nil { exported = Pager.export(self) }
    _ = try? exported!.acquire()
    return exported!
  }

  func allocations() -> UInt { copyCount }
  func copies() -> UInt { copyCount }
}

func start() -> PagerControl {
  PagerControl.export(CopyOnWrite())!
}
