// ArpCacheTests: resolution, queueing, retries, expiry, RFC 826's merge rule, and a cache
// that evicts rather than grows.

import KernelCore
import Testing

@Suite struct ArpCacheTests {
  let gateway = IPv4Address(10, 0, 2, 2)
  let gatewayMac = MacAddress(0x52, 0x55, 0x0A, 0x00, 0x02, 0x02)

  func kind(_ resolution: ArpCache.Resolution) -> String {
    switch resolution {
    case .ready: "ready"
    case .queuedSendRequest: "request"
    case .queued: "queued"
    case .dropped(let reason): "dropped: \(reason)"
    }
  }

  @Test func packetsWaitForTheReplyAndGoWhenItComes() {
    var cache = ArpCache()
    #expect(kind(cache.resolve(gateway, packet: 1, now: 0)) == "request")
    #expect(kind(cache.resolve(gateway, packet: 2, now: 10)) == "queued")
    #expect(cache.waitingCount == 2)
    #expect(cache.learn(gateway, at: gatewayMac, now: 20, add: false) == [1, 2])
    #expect(kind(cache.resolve(gateway, packet: 3, now: 30)) == "ready")
    #expect(cache.lookup(gateway, now: 20 + ArpCache.lifetime - 1) == gatewayMac)
    #expect(cache.lookup(gateway, now: 20 + ArpCache.lifetime) == nil, "expired")
    // Expired: asked for again.
    #expect(kind(cache.resolve(gateway, packet: 4, now: 20 + ArpCache.lifetime)) == "request")
  }

  @Test func requestsAreRetriedThenGivenUpWithTheirPackets() {
    var cache = ArpCache()
    _ = cache.resolve(gateway, packet: 9, now: 0)
    #expect(cache.tick(now: 999).requests.isEmpty)
    #expect(cache.tick(now: 1_000).requests == [gateway])
    #expect(cache.tick(now: 2_000).requests == [gateway])
    let last = cache.tick(now: 3_000)
    #expect(
      last.requests.isEmpty && last.failed.count == 1 && last.failed[0].0 == gateway
        && last.failed[0].1 == [9])
    #expect(cache.count == 0 && cache.waitingCount == 0)
  }

  @Test func queuesAreBounded() {
    var cache = ArpCache()
    for packet in 0..<ArpCache.waitingPerAddress {
      _ = cache.resolve(gateway, packet: UInt32(packet), now: 0)
    }
    #expect(
      kind(cache.resolve(gateway, packet: 99, now: 0)) == "dropped: too many packets wait for this address")
    for host in 0..<20 { _ = cache.resolve(IPv4Address(10, 0, 2, UInt8(100 + host)), packet: 1, now: 0) }
    #expect(cache.waitingCount == ArpCache.waitingInAll)
    #expect(
      kind(cache.resolve(IPv4Address(10, 0, 2, 200), packet: 1, now: 0))
        == "dropped: too many packets wait for addresses")
  }

  @Test func onlyPacketsForUsAddUnknownAddresses() {
    var cache = ArpCache()
    cache.learn(gateway, at: gatewayMac, now: 0, add: false)
    #expect(cache.lookup(gateway, now: 1) == nil, "a request between others is not learned")
    cache.learn(gateway, at: gatewayMac, now: 0, add: true)
    #expect(cache.lookup(gateway, now: 1) == gatewayMac)
    // Known: updated whatever the packet's target (the merge rule).
    let moved = MacAddress(2, 0, 0, 0, 0, 9)
    cache.learn(gateway, at: moved, now: 5, add: false)
    #expect(cache.lookup(gateway, now: 6) == moved)
  }

  @Test func aFullCacheEvictsInsteadOfGrowing() {
    var cache = ArpCache()
    for host in 0..<ArpCache.capacity {
      cache.learn(IPv4Address(10, 0, 3, UInt8(host)), at: gatewayMac, now: UInt64(host), add: true)
    }
    #expect(cache.count == ArpCache.capacity)
    cache.learn(IPv4Address(10, 0, 4, 1), at: gatewayMac, now: 100, add: true)
    #expect(cache.count == ArpCache.capacity)
    #expect(cache.lookup(IPv4Address(10, 0, 3, 0), now: 101) == nil, "the one expiring first went")
    #expect(cache.lookup(IPv4Address(10, 0, 4, 1), now: 101) == gatewayMac)
    // Half awaited (as many as packets may wait), half resolved: a new address evicts a
    // resolved one, and the awaited ones keep their packets.
    var mixed = ArpCache()
    for host in 0..<ArpCache.waitingInAll {
      _ = mixed.resolve(IPv4Address(10, 0, 5, UInt8(host)), packet: 1, now: 0)
    }
    for host in 0..<(ArpCache.capacity - ArpCache.waitingInAll) {
      mixed.learn(IPv4Address(10, 0, 6, UInt8(host)), at: gatewayMac, now: 0, add: true)
    }
    mixed.learn(IPv4Address(10, 0, 7, 1), at: gatewayMac, now: 1, add: true)
    #expect(mixed.count == ArpCache.capacity && mixed.waitingCount == ArpCache.waitingInAll)
    #expect(mixed.evictedPackets == 0)
  }

  @Test func groupHardwareAddressesAreNeverLearned() {
    var cache = ArpCache()
    _ = cache.resolve(gateway, packet: 1, now: 0)
    #expect(cache.learn(gateway, at: .broadcast, now: 1, add: true).isEmpty)
    #expect(cache.learn(gateway, at: MacAddress(0x01, 0, 0x5E, 0, 0, 1), now: 1, add: true).isEmpty)
    #expect(cache.lookup(gateway, now: 2) == nil && cache.waitingCount == 1)
  }

  @Test func aFloodOfRequestsCannotPushOutTheGateway() {
    var cache = ArpCache()
    _ = cache.resolve(gateway, packet: 1, now: 0)
    cache.learn(gateway, at: gatewayMac, now: 10, add: false)
    for host in 0..<1_000 {
      cache.learn(
        IPv4Address(value: 0x0A01_0000 | UInt32(host)),
        at: MacAddress(2, 0, 0, 0, UInt8(host >> 8), UInt8(host & 0xFF)),
        now: 20 + UInt64(host), add: true)
    }
    #expect(cache.count == ArpCache.capacity)
    #expect(cache.lookup(gateway, now: 2_000) == gatewayMac, "the address asked for stays")
  }
}
