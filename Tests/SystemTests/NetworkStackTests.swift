// NetworkStackTests: the network servers (Ethernet, ARP, IPv4, ICMP, UDP, DHCP, DNS) in
// both placements against stacks nobody here wrote, through tools/network-stack-test:
// QEMU's user-mode network (slirp: DHCP, ping, DNS, UDP both ways, fragments slirp made)
// and a raw-frame peer on `-netdev dgram` (ARP, ICMP errors, reassembly limits, drops
// counted by reason, and 100,000 fuzzed frames after which the stack must still answer;
// TCP segments written by hand: a RST for a closed port, a connection during and after a
// flood of 10,000 SYNs, the table empty again, 100,000 fuzzed segments, every way a
// connection closes, and every heap back to its base after them and after the abuse);
// and TCP with the applications on it against the host's TCP through tools/tcp-test
// (curl and Python sockets through slirp's port forwarding, the shell's `get` to a host
// HTTP server); and TCP against Linux's (tools/tcp-test linux: the reference Linux guest
// of tools/linux-guest on a socket link, 10 MiB each way, Linux's window scaling, SACK
// and timestamps on and off; tools/tcp-test lossy: 2 MiB each way through a relay that
// drops, duplicates, reorders and corrupts 1% or 5% of frames each). Each harness prints one JSON object; every check it names
// must have passed.

import Foundation
import Testing

/// Runs a harness (`tool` under tools/); its checks (name, passed, detail) and the log it kept.
private func runStackTest(_ arguments: [String], tool: String = "network-stack-test") throws -> (
  checks: [(String, Bool, String)], log: String
) {
  let process = Process()
  process.executableURL = QEMU.root.appendingPathComponent("tools/\(tool)")
  process.arguments = arguments
  process.currentDirectoryURL = QEMU.root
  let pipe = Pipe()
  process.standardOutput = pipe
  process.standardError = FileHandle.standardError
  try process.run()
  let output = pipe.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  let lastLine = String(decoding: output, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
  guard let object = try? JSONSerialization.jsonObject(with: Data(lastLine.utf8)) as? [String: Any],
    let checks = object["checks"] as? [String: [String: Any]]
  else {
    return ([("harness output", false, "no JSON result; it printed: \(lastLine.suffix(300))")], "")
  }
  let figures = object["figures"] as? [String: Any] ?? [:]
  return (
    checks.keys.sorted().map { name in
      (name, checks[name]?["ok"] as? Bool ?? false, checks[name]?["detail"] as? String ?? "")
    }, figures["log"] as? String ?? ""
  )
}

@Suite struct NetworkStackTests {
  @Test(arguments: ["systems/default.system", "systems/isolated.system"])
  func theStackWorksOverQemusUserNetwork(system: String) throws {
    let (checks, log) = try runStackTest(["slirp", system])
    let expected: Set = [
      "dhcp_lease", "ping_gateway", "dns_lookup", "udp_to_host_and_back", "udp_from_host_through_hostfwd",
      "ifconfig_shows_lease", "no_panic_or_server_fault",
    ]
    #expect(Set(checks.map(\.0)) == expected, "the slirp run's checks: \(checks)")
    for (name, passed, detail) in checks {
      #expect(passed, "\(system) over slirp: \(name): \(detail) (serial log: \(log))")
    }
  }

  @Test(arguments: ["systems/tests/network-peer.system", "systems/tests/network-peer-isolated.system"])
  func theStackHoldsUpAgainstARawFramePeerAndFuzzing(system: String) throws {
    let (checks, log) = try runStackTest(["peer", system, "--fuzz", "100000", "--seed", "20261201"])
    let expected: Set = [
      "arp_request_answered", "arp_retried_then_datagram_sent", "arp_gives_up_after_three_requests",
      "icmp_port_unreachable", "icmp_protocol_unreachable", "no_error_for_broadcast",
      "no_error_for_link_broadcast",
      "bad_packets_not_answered",
      "fragments_reassembled_and_echo_fragmented", "overlapping_fragments_refused",
      "incomplete_datagram_times_out", "drops_counted_by_reason", "answers_after_fuzzing",
      "tcp_reset_for_closed_port", "tcp_connection_by_hand", "tcp_connection_during_syn_flood",
      "tcp_connection_after_syn_flood", "tcp_table_empty_after_flood", "tcp_connection_after_fuzzing",
      "tcp_close_fin_from_peer", "tcp_close_fin_from_tessera", "tcp_close_simultaneous_close",
      "tcp_close_reset_by_peer", "tcp_close_abort_by_tessera", "tcp_close_peer_vanishes",
      "tcp_close_paths_leave_nothing", "tcp_memory_back_after_abuse", "no_panic_or_server_fault",
    ]
    #expect(Set(checks.map(\.0)) == expected, "the peer run's checks: \(checks)")
    for (name, passed, detail) in checks {
      #expect(passed, "\(system) against the peer: \(name): \(detail) (serial log: \(log))")
    }
  }

  @Test(arguments: ["systems/default.system", "systems/isolated.system"])
  func tcpAndItsApplicationsWorkWithTheHostsTcp(system: String) throws {
    let (checks, log) = try runStackTest([system], tool: "tcp-test")
    let expected: Set = [
      "dhcp_lease", "status_page", "files_put_and_get", "download_10MiB", "upload_10MiB", "echo_10MiB",
      "bad_requests_refused",
      "concurrent_echo", "guest_fetches_from_host", "idle_connections_closed", "netstat",
      "no_panic_or_server_fault",
    ]
    #expect(Set(checks.map(\.0)) == expected, "the TCP run's checks: \(checks)")
    for (name, passed, detail) in checks {
      #expect(passed, "\(system) TCP: \(name): \(detail) (serial log: \(log))")
    }
  }

  // Two of the four combinations: each placement once and Linux's options on and off once
  // (all four together, two QEMUs each beside the other tests on CI's 2 cores, pushed an
  // unrelated test past its 60 s limit). `tools/tcp-test linux` runs any of them.
  @Test(arguments: [
    ("systems/tests/network-linux.system", "1,1,1"), ("systems/tests/network-linux-isolated.system", "0,0,0"),
  ])
  func tcpMovesTenMebibytesEachWayWithLinuxsTcp(system: String, options: String) throws {
    let (checks, log) = try runStackTest(["linux", system, "--tcp", options], tool: "tcp-test")
    let expected: Set = [
      "linux_guest_built", "linux_tcp_options", "tessera_receives_10MiB_from_linux",
      "linux_receives_10MiB_from_tessera", "no_panic_or_server_fault",
    ]
    #expect(Set(checks.map(\.0)) == expected, "the Linux run's checks: \(checks)")
    for (name, passed, detail) in checks {
      #expect(
        passed,
        "\(system) with Linux (window scaling, SACK, timestamps \(options)): \(name): \(detail) (serial log: \(log))"
      )
    }
  }

  // Each placement once and each rate once, one after the other: all four combinations
  // (each passed when run by hand with `tools/tcp-test lossy`) beside the other tests kept
  // two cores busy long enough that the driver-restart test once timed out.
  @Test func tcpRecoversWithLinuxsTcpOverALossyLink() throws {
    for (system, percent) in [
      ("systems/tests/network-linux.system", 1), ("systems/tests/network-linux-isolated.system", 5),
    ] {
      let (checks, log) = try runStackTest(["lossy", system, "--loss", String(percent)], tool: "tcp-test")
      let expected: Set = [
        "linux_guest_built", "linux_tcp_options", "tessera_receives_2MiB_from_linux",
        "linux_receives_2MiB_from_tessera", "relay_impaired_both_ways", "both_ends_retransmitted",
        "no_panic_or_server_fault",
      ]
      #expect(Set(checks.map(\.0)) == expected, "the lossy run's checks: \(checks)")
      for (name, passed, detail) in checks {
        #expect(
          passed, "\(system) through a link with \(percent)% loss: \(name): \(detail) (serial log: \(log))")
      }
    }
  }
}
