"""guestlib: what the tools that test a booted guest share (tools/network-stack-test,
tools/tcp-test): QEMU with a composition and its serial console read by a thread, a
report of named checks and figures printed as JSON, and the crash check on the log."""
import os
import re
import socket
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Crash markers in the kernel's log: any of them fails a run.
FAILURES = re.compile(r"panic|server \w+ stopped|Swift runtime trap|page fault")


def free_port(kind=socket.SOCK_DGRAM):
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Guest:
    """QEMU with the composition (or, with `command`, any QEMU command line whose serial
    console is stdio), its serial console read by a thread."""

    def __init__(self, system, network_arguments, log_name, command=None):
        if command is None:
            servers = sorted(os.path.join("build/servers", name)
                             for name in os.listdir(os.path.join(ROOT, "build/servers")) if name.endswith(".srv"))
            modules = ",".join(["build/kernel.map", system] + servers)
            command = ["qemu-system-i386", "-m", "128M", "-display", "none", "-no-reboot", "-monitor", "none",
                       "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
                       "-append", "on-panic=exit", "-kernel", "build/kernel.elf", "-initrd", modules]
        self.log_name = log_name
        self.process = subprocess.Popen(
            command + network_arguments,
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.text = ""
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while True:
            chunk = self.process.stdout.read1(4096)
            if not chunk:
                return
            with self.lock:
                self.text += chunk.decode("utf-8", "replace").replace("\r", "")

    def mark(self):
        with self.lock:
            return len(self.text)

    def wait_for(self, pattern, timeout, since=0):
        """The first match of `pattern` in the console after `since`, or None after `timeout` s."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            with self.lock:
                found = regex.search(self.text, since)
            if found:
                return found
            if self.process.poll() is not None:
                time.sleep(0.2)
                with self.lock:
                    return regex.search(self.text, since)
            time.sleep(0.05)
        return None

    def command(self, line, until, timeout=20):
        """Types `line` at the prompt; the output up to the match of `until` (None if it never came)."""
        since = self.mark()
        self.process.stdin.write(line.encode() + b"\r")
        self.process.stdin.flush()
        found = self.wait_for(until, timeout, since)
        with self.lock:
            output = self.text[since:found.end() if found else len(self.text)]
        return output if found else None

    def close(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.reader.join(timeout=5)
        folder = os.path.join(ROOT, "build/test-logs")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{self.log_name}.log")
        with open(path, "w") as file:
            file.write(self.text)
        return os.path.relpath(path, ROOT)


class Report:
    def __init__(self, system, mode):
        self.result = {"system": system, "mode": mode, "checks": {}, "figures": {}}

    def check(self, name, ok, detail=""):
        self.result["checks"][name] = {"ok": bool(ok), "detail": detail}
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)

    def figure(self, name, value):
        self.result["figures"][name] = value

    @property
    def passed(self):
        return all(check["ok"] for check in self.result["checks"].values())


def crash_check(report, guest):
    with guest.lock:
        crashes = [line for line in guest.text.splitlines() if FAILURES.search(line)]
    report.check("no_panic_or_server_fault", not crashes, "; ".join(crashes[:3]) or "none in the log")
