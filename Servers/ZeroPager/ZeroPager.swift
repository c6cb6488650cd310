// ZeroPager: on-demand zero-filled memory. The first touch of a page (read or write)
// allocates a zeroed page; later faults on the same page (a write after a read) get the
// same page again, so each page is allocated once, and only when touched.

import ServerRuntime

final class ZeroFill: PagerImplementation, PagerControlImplementation {
  /// The page allocated for each offset, by page index.
  private var pages: [Memory?] = []
  private var allocated: UInt = 0
  private var exported: Pager?

  func fault(offset: UInt, write: UInt) -> Memory? {
    let index = Int(offset / 4096)
    while pages.count <= index { pages.append(nil) }
    if pages[index] == nil {
      guard let page = try? Required.memory.allocate(bytes: 4096) else { return nil }
      pages[index] = page
      allocated += 1
    }
    // Returning a reference hands one count to the caller; keep ours.
    guard let page = pages[index], (try? page.acquire()) != nil else { return nil }
    return page
  }

  func pager() -> Pager {
    if exported == nil { exported = Pager.export(self) }
    _ = try? exported!.acquire()
    return exported!
  }

  func allocations() -> UInt { allocated }
  func copies() -> UInt { 0 }
}

func start() -> PagerControl {
  PagerControl.export(ZeroFill())!
}
