"""lossyrelay: a link between two QEMU `-netdev socket,connect=` ends that drops,
duplicates, reorders and corrupts Ethernet frames with seeded probabilities (used by
`tools/tcp-test lossy`).

QEMU's stream socket netdev sends each frame as a 4-byte big-endian length and the
frame. The relay listens on two ports, accepts one QEMU on each, and forwards frames
both ways; for each frame, independently and with probability `rate` each, it
  drops it,
  sends it twice,
  holds it back until the next frame in that direction has gone (or 20 ms passed), and
  corrupts one byte (XOR with a nonzero value) of an IPv4 frame after the Ethernet
  header, where the IPv4, TCP, UDP or ICMP checksum must catch it. Ethernet's own CRC
  would catch damage elsewhere on a real link (the socket netdev carries no CRC, and
  ARP has no checksum of its own), so damage there is left to the drop rate.
Each direction has its own random generator seeded from `seed`, so a run's decisions
depend only on the frames' order in that direction. `counts` holds per-direction
totals for the report.
"""
import random
import select
import socket
import struct
import threading
import time

HOLD_SECONDS = 0.02


class LossyRelay:
    def __init__(self, rate, seed):
        self.rate = rate
        self.seed = seed
        self.listeners = []
        for _ in range(2):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            self.listeners.append(listener)
        self.ports = [listener.getsockname()[1] for listener in self.listeners]
        self.counts = {}
        self.error = None
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            ends = []
            for listener in self.listeners:
                listener.settimeout(120)
                end, _ = listener.accept()
                end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                ends.append(end)
            self.ends = ends
            directions = [threading.Thread(target=self._forward, args=(ends[0], ends[1], "a_to_b", 1), daemon=True),
                          threading.Thread(target=self._forward, args=(ends[1], ends[0], "b_to_a", 2), daemon=True)]
            for direction in directions:
                direction.start()
            for direction in directions:
                direction.join()
        except OSError as error:
            if not self.stopping:
                self.error = f"{type(error).__name__}: {error}"

    def _forward(self, source, destination, name, stream):
        chance = random.Random(self.seed * 1_000_003 + stream)
        counts = {"frames": 0, "dropped": 0, "duplicated": 0, "reordered": 0, "corrupted": 0}
        self.counts[name] = counts
        buffer = bytearray()
        held = None
        held_since = 0.0

        def send(frame):
            destination.sendall(struct.pack(">I", len(frame)) + frame)

        try:
            while True:
                ready, _, _ = select.select([source], [], [], HOLD_SECONDS)
                if not ready:
                    if held is not None and time.monotonic() - held_since >= HOLD_SECONDS:
                        send(held)
                        held = None
                    continue
                chunk = source.recv(262144)
                if not chunk:
                    return
                buffer.extend(chunk)
                while len(buffer) >= 4:
                    length = struct.unpack(">I", buffer[:4])[0]
                    if len(buffer) < 4 + length:
                        break
                    frame = bytearray(buffer[4:4 + length])
                    del buffer[:4 + length]
                    counts["frames"] += 1
                    # Four draws per frame whatever happens, so one decision never shifts
                    # the next frame's.
                    drop, duplicate, reorder, corrupt = (chance.random() < self.rate for _ in range(4))
                    where, flip = chance.randrange(1 << 16), chance.randrange(1, 256)
                    if corrupt and len(frame) > 14 and frame[12:14] == b"\x08\x00":
                        frame[14 + where % (len(frame) - 14)] ^= flip
                        counts["corrupted"] += 1
                    if drop:
                        counts["dropped"] += 1
                        continue
                    copies = [bytes(frame)] * (2 if duplicate else 1)
                    counts["duplicated"] += 1 if duplicate else 0
                    if reorder and held is None:
                        # The first copy waits for the next frame that goes through.
                        counts["reordered"] += 1
                        held, held_since = copies.pop(0), time.monotonic()
                        for copy in copies:
                            send(copy)
                        continue
                    for copy in copies:
                        send(copy)
                    if held is not None:
                        send(held)
                        held = None
        except OSError as error:
            if not self.stopping:
                self.error = f"{name}: {type(error).__name__}: {error}"

    def close(self):
        self.stopping = True
        for listener in self.listeners:
            listener.close()
        for end in getattr(self, "ends", []):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()
