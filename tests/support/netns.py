"""A device in a network namespace of its own, behind a slow, lossy veth link to the host.

The client is meant for devices on bad networks, and loopback shows none of that: no loss, no
rate limit, no link that goes away. `LossyLink` gives the device a namespace whose only way out
is one veth pair; the host end keeps the test's HTTP server, and commands run on the device side
with `ip netns exec` (`LossyLink.command`).

The link is shaped with `netem` (loss, rate and delay) when the kernel has it. Some kernels are
built without it, so the fallback is `tbf` on both ends for the rate and nftables rules inside the
device's namespace that drop packets at random in both directions; the host's own ruleset is
never touched. `mechanism` says which was used, `stats()` how many packets were dropped.

Names and addresses are unique per process (`swupd-e2e-<pid>-<n>`, a free /30 in
10.213.0.0/16, chosen under a lock shared by every test process), so parallel workers do not
clash; namespaces and links left by killed runs are removed when the next one is set up.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import itertools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

PREFIX = "swupd-e2e"
NETWORK = ipaddress.IPv4Network("10.213.0.0/16")
_LOCK = os.path.join(tempfile.gettempdir(), "swupd-e2e-netns.lock")
_serial = itertools.count()


class SetupError(Exception):
    """The link cannot be built on this machine; the message says why."""


@dataclass(frozen=True)
class Shape:
    """What the link does to traffic, in each direction."""

    rate_mbit: int = 8
    loss_percent: int = 3
    delay_ms: int = 5  # netem only; tbf adds no delay of its own


@dataclass(frozen=True)
class Direction:
    packets: int
    dropped: int

    def __str__(self) -> str:
        return f"{self.dropped} of {self.packets} packets dropped"


@dataclass(frozen=True)
class Stats:
    down: Direction  # host to device
    up: Direction  # device to host


def _run(*argv: object, ns: str | None = None, check: bool = True, stdin: str | None = None) -> str:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + [str(a) for a in argv]
    r = subprocess.run(cmd, capture_output=True, text=True, input=stdin, check=False)
    if check and r.returncode != 0:
        raise SetupError(f"`{' '.join(cmd)}` failed: {(r.stderr or r.stdout).strip()[-300:]}")
    return r.stdout


def _ok(*argv: object) -> bool:
    return subprocess.run([str(a) for a in argv], capture_output=True, check=False).returncode == 0


def _ensure(binary: str, package: str) -> None:
    """Install `package` from Debian when `binary` is missing and we may (CI runs as root)."""
    if shutil.which(binary):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SetupError(f"{binary} is not installed and cannot be installed here (not root or no apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    wait = ["-o", "DPkg::Lock::Timeout=120"]  # another worker may be installing nginx
    for cmd in (
        ["apt-get", *wait, "update", "-qq"],
        ["apt-get", *wait, "install", "-y", "-qq", "--no-install-recommends", package],
    ):
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if r.returncode != 0 and not shutil.which(binary):
            raise SetupError(f"installing {package} failed: {r.stderr.strip()[-300:]}")
    if not shutil.which(binary):
        raise SetupError(f"{package} did not install {binary}")


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """Serialises set-up between test processes: address choice and leftover removal."""
    with open(_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _remove_leftovers() -> None:
    """Namespaces and host links of earlier runs whose process is gone."""
    for m in re.finditer(rf"^({PREFIX}-(\d+)-\d+)\b", _run("ip", "netns", "list", check=False), re.M):
        if not _alive(int(m[2])):
            _run("ip", "netns", "delete", m[1], check=False)
    for m in re.finditer(r"^\d+: (swe(\d+)h\d+)[@:]", _run("ip", "-o", "link", "show", check=False), re.M):
        if not _alive(int(m[2])):
            _run("ip", "link", "delete", m[1], check=False)


def _free_subnet() -> ipaddress.IPv4Network:
    """A /30 of NETWORK that no address of the host's namespace overlaps."""
    used = [
        ipaddress.ip_network(m[1], strict=False)
        for m in re.finditer(r"\binet (\S+)", _run("ip", "-4", "-o", "addr", "show"))
    ]
    subnets = list(NETWORK.subnets(new_prefix=30))
    start = os.getpid() % len(subnets)
    for i in range(len(subnets)):
        candidate = subnets[(start + i) % len(subnets)]
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise SetupError(f"no free /30 left in {NETWORK}")


def _counters(ruleset: str, chain: str) -> Direction:
    """The two counters of a chain's rule: every packet, then the dropped ones."""
    body = ruleset.split(f"chain {chain} ", 1)[1].split("}", 1)[0]
    counts = [int(n) for n in re.findall(r"counter packets (\d+)", body)]
    return Direction(counts[0], counts[1])


def _netem_stats(text: str) -> Direction:
    m = re.search(r"Sent \d+ bytes (\d+) pkt \(dropped (\d+)", text)
    if not m:
        raise SetupError(f"no counters in `tc -s qdisc show`: {text.strip()}")
    return Direction(int(m[1]) + int(m[2]), int(m[2]))


class LossyLink:
    """A namespace for the device joined to the host by a shaped veth pair; see the module doc.

    `open()` builds it (raising `SetupError` with the reason when this machine cannot), `close()`
    removes it and is safe to call on a half-built link."""

    def __init__(self, shape: Shape | None = None) -> None:
        self.shape = shape or Shape()
        n, pid = next(_serial), os.getpid()
        self.ns = f"{PREFIX}-{pid}-{n}"
        self.host_if, self.dev_if = f"swe{pid}h{n}", f"swe{pid}d{n}"
        self.host_addr = self.dev_addr = ""
        self.mechanism = ""
        self._netem = False

    def open(self) -> LossyLink:
        with _machine_lock():
            _ensure("ip", "iproute2")
            _remove_leftovers()
            try:
                self._build()
            except BaseException:
                self.close()
                raise
        return self

    def __enter__(self) -> LossyLink:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _build(self) -> None:
        _run("ip", "netns", "delete", self.ns, check=False)  # a stale one of a reused pid
        _run("ip", "netns", "add", self.ns)
        subnet = _free_subnet()
        self.host_addr, self.dev_addr = str(subnet[1]), str(subnet[2])
        _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.dev_if, "netns", self.ns)
        # One packet per send, so that loss is per packet and not per 64 KB segmentation burst.
        _run("ip", "link", "set", self.host_if, "gso_max_segs", "1")
        _run("ip", "-n", self.ns, "link", "set", self.dev_if, "gso_max_segs", "1")
        _run("ip", "addr", "add", f"{self.host_addr}/30", "dev", self.host_if)
        _run("ip", "link", "set", self.host_if, "up")
        _run("ip", "-n", self.ns, "addr", "add", f"{self.dev_addr}/30", "dev", self.dev_if)
        _run("ip", "-n", self.ns, "link", "set", self.dev_if, "up")
        _run("ip", "-n", self.ns, "link", "set", "lo", "up")
        self._shape()

    def _shape(self) -> None:
        s = self.shape
        netem = ["netem", "loss", f"{s.loss_percent}%", "rate", f"{s.rate_mbit}mbit", "delay", f"{s.delay_ms}ms"]
        if _ok("tc", "qdisc", "add", "dev", self.host_if, "root", *netem):
            _run("tc", "qdisc", "add", "dev", self.dev_if, "root", *netem, ns=self.ns)
            self._netem = True
            self.mechanism = f"netem: {s.loss_percent}% loss, {s.rate_mbit} Mbit/s, {s.delay_ms} ms delay each way"
            return
        tbf = ["tbf", "rate", f"{s.rate_mbit}mbit", "burst", "32kbit", "latency", "400ms"]
        _run("tc", "qdisc", "add", "dev", self.host_if, "root", *tbf)
        _run("tc", "qdisc", "add", "dev", self.dev_if, "root", *tbf, ns=self.ns)
        _ensure("nft", "nftables")
        # Both chains see only the device's own traffic: input is the download, output the upload.
        loss = f"numgen random mod 100 < {s.loss_percent} counter drop"
        _run("nft", "-f", "-", ns=self.ns, stdin=f"""table inet lossy {{
            chain input {{ type filter hook input priority 0; iifname "{self.dev_if}" counter {loss}; }}
            chain output {{ type filter hook output priority 0; oifname "{self.dev_if}" counter {loss}; }}
        }}
        """)  # fmt: skip
        self.mechanism = f"tbf + nft: {s.loss_percent}% loss, {s.rate_mbit} Mbit/s each way"

    def close(self) -> None:
        """Remove the link and the namespace; processes still inside keep theirs until they end."""
        _run("ip", "link", "delete", self.host_if, check=False)
        _run("ip", "netns", "delete", self.ns, check=False)

    # -- use --------------------------------------------------------------------------------

    def command(self, *argv: object) -> list[str]:
        """`argv` as a command line that runs on the device's side of the link."""
        return ["ip", "netns", "exec", self.ns, *(str(a) for a in argv)]

    def set_carrier(self, up: bool) -> None:
        """Take the host end down or up: the device sees its link lose carrier, as when a cable
        is pulled or a radio link drops, and nothing crosses until it is back."""
        _run("ip", "link", "set", self.host_if, "up" if up else "down")

    def abort_connections(self) -> int:
        """Abort the device's TCP connections to the host; returns how many there were.

        What a device sees when its connections do not outlive an outage (a new address, a NAT
        that forgot them), without waiting out the client's read timeout. Raises SetupError
        when the kernel cannot destroy sockets (no CONFIG_INET_DIAG_DESTROY)."""
        target = ["dst", self.host_addr]
        listed = _run("ss", "-Htn", *target, ns=self.ns).splitlines()
        _run("ss", "-HtnK", *target, ns=self.ns)
        if _run("ss", "-Htn", "state", "established", *target, ns=self.ns).strip():
            raise SetupError("ss -K did not abort the device's connections (kernel without sock_destroy?)")
        return len(listed)

    def stats(self) -> Stats:
        if self._netem:
            return Stats(
                _netem_stats(_run("tc", "-s", "qdisc", "show", "dev", self.host_if)),
                _netem_stats(_run("tc", "-s", "qdisc", "show", "dev", self.dev_if, ns=self.ns)),
            )
        ruleset = _run("nft", "list", "table", "inet", "lossy", ns=self.ns)
        return Stats(_counters(ruleset, "input"), _counters(ruleset, "output"))
