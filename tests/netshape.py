"""Shaped links for media tests and benchmarks: namespaces, veth, tbf and a userspace relay.

    participant A ns ──veth──┐
    participant B ns ──veth──┤ br0 (server ns, 10.77.0.1/24) ── SFU
    participant C ns ──veth── link ns (netshape_relay.py: delay, jitter, loss, blackout) ──veth──┘
                     tbf up                      tbf down

Every address (10.77.0.0/24) exists only inside namespaces this harness creates; none has a
default route, so nothing can reach the host's interfaces or beyond. The kernel has no `netem`:
`tc tbf` limits the rate (uplink on the participant's interface, downlink on the link
namespace's interface towards it) and the relay does the rest (see its docstring).

In-process use: `NamespaceLoop(host)` runs an asyncio loop in a thread that has entered the
host's network namespace (`setns`), so every socket aiortc/aioice opens there lives in it;
`namespace_host_addresses()` makes aioice gather only the address of the namespace the
gathering thread is in (and nothing in a thread that is in none of ours).

Everything is bounded: the relay stops by itself after `max_s`, and `close()` (also on failure,
via the context manager) kills the relays by PID and deletes the namespaces.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aioice.ice

T = TypeVar("T")

SUBNET_PREFIX = "10.77.0."
SERVER_ADDRESS = SUBNET_PREFIX + "1"
RELAY = Path(__file__).with_name("netshape_relay.py")
CLONE_NEWNET = 0x40000000
COMMAND_TIMEOUT_S = 10.0


class NetshapeUnavailable(RuntimeError):
    """This machine cannot build the namespaces (not root, no `ip netns`, no tbf)."""


def unavailable_reason() -> str | None:
    """Why shaped-link tests cannot run here, or None if they can."""
    if os.geteuid() != 0:
        return "shaped links need root (network namespaces)"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "shaped links need iproute2 (`ip`, `tc`)"
    probe = f"odprobe{os.getpid()}"
    try:
        _run("ip", "netns", "add", probe)
    except (NetshapeUnavailable, OSError) as exc:
        return f"`ip netns add` is not available: {exc}"
    with contextlib.suppress(NetshapeUnavailable):
        _run("ip", "netns", "del", probe)
    return None


def _run(*argv: str) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise NetshapeUnavailable(f"{' '.join(argv)}: timed out") from exc
    if done.returncode != 0:
        raise NetshapeUnavailable(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class LinkShape:
    """One participant's link. Rates in kbit/s (None: unlimited); loss as a probability."""

    up_kbit: int | None = None
    down_kbit: int | None = None
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    up_loss: float = 0.0
    down_loss: float = 0.0


@dataclass(frozen=True, slots=True)
class Host:
    netns: str
    address: str


class _Relay:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.counters: str = ""

    def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        """EOF on stdin: the relay prints its counters and exits; killed (by PID) if it hangs."""
        try:
            out, _ = self.process.communicate(timeout=3)
            lines = out.strip().splitlines()
            self.counters = lines[-1] if lines else ""
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


class ShapedNetwork:
    """The namespaces of one test run. Use as a context manager."""

    def __init__(self, *, max_s: float = 180.0) -> None:
        self.run_id = f"od{os.getpid()}x{int(time.monotonic() * 1000) % 100000}"
        self.max_s = max_s
        self._namespaces: list[str] = []
        self._relays: dict[str, _Relay] = {}
        self._participants = 0
        self._counters: dict[str, str] = {}
        self.server = self._add_server()

    def __enter__(self) -> ShapedNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _netns(self, suffix: str) -> str:
        name = f"{self.run_id}-{suffix}"
        _run("ip", "netns", "add", name)
        self._namespaces.append(name)
        for key in ("all", "default"):  # IPv6 link-local addresses would only add noise
            _run(
                "ip", "netns", "exec", name, "sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"
            )
        return name

    def _add_server(self) -> Host:
        try:
            ns = self._netns("srv")
            _run("ip", "-n", ns, "link", "add", "br0", "type", "bridge")
            _run("ip", "-n", ns, "addr", "add", f"{SERVER_ADDRESS}/24", "dev", "br0")
            _run("ip", "-n", ns, "link", "set", "br0", "up")
        except BaseException:
            self.close()
            raise
        return Host(ns, SERVER_ADDRESS)

    def add_participant(self, name: str, shape: LinkShape | None = None) -> Host:
        """A namespace for `name` on the server's bridge, through a shaped link if `shape`."""
        self._participants += 1
        index = self._participants
        address = f"{SUBNET_PREFIX}{10 + index}"
        try:
            ns = self._netns(name)
            srv = self.server.netns
            port = f"v{index}"
            link = ""
            if shape is None:
                _run("ip", "-n", srv, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                     "netns", ns)  # fmt: skip
            else:
                link = self._netns(f"{name}-link")
                _run("ip", "-n", link, "link", "add", "shp0", "type", "veth", "peer", "name", "eth0",
                     "netns", ns)  # fmt: skip
                _run("ip", "-n", srv, "link", "add", port, "type", "veth", "peer", "name", "shp1",
                     "netns", link)  # fmt: skip
                for dev in ("shp0", "shp1"):
                    _run("ip", "-n", link, "link", "set", dev, "promisc", "on", "up")
            _run("ip", "-n", srv, "link", "set", port, "master", "br0", "up")
            _run("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            if shape is not None:
                self._offloads_off(ns, "eth0")
                self._offloads_off(srv, port)
                if shape.up_kbit:
                    self._tbf(ns, "eth0", shape.up_kbit)
                if shape.down_kbit:
                    self._tbf(link, "shp0", shape.down_kbit)  # relay → participant
                self._relays[name] = self._start_relay(link, shape)
        except BaseException:
            self.close()
            raise
        return Host(ns, address)

    @staticmethod
    def _offloads_off(ns: str, dev: str) -> None:
        _run("ip", "netns", "exec", ns, sys.executable, str(RELAY), "--offloads-off", dev)

    @staticmethod
    def _tbf(ns: str, dev: str, kbit: int) -> None:
        burst = max(4, kbit // 80)  # kbyte: ~100 ms at the rate, at least a few packets
        _run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf",
             "rate", f"{kbit}kbit", "burst", f"{burst}kb", "latency", "300ms")  # fmt: skip

    def _start_relay(self, link: str, shape: LinkShape) -> _Relay:
        argv = ["ip", "netns", "exec", link, sys.executable, str(RELAY), "shp0", "shp1",
                "--up-loss", str(shape.up_loss), "--down-loss", str(shape.down_loss),
                "--delay-ms", str(shape.delay_ms), "--jitter-ms", str(shape.jitter_ms),
                "--max-s", str(self.max_s)]  # fmt: skip
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        relay = _Relay(process)
        assert process.stdout is not None
        ready: concurrent.futures.Future[str] = concurrent.futures.Future()
        threading.Thread(
            target=lambda: ready.set_result(process.stdout.readline() if process.stdout else ""),
            daemon=True,
        ).start()
        try:
            line = ready.result(timeout=COMMAND_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            line = ""
        if line.strip() != "ready":
            relay.stop()
            err = process.stderr.read() if process.stderr else ""
            raise NetshapeUnavailable(f"link relay did not start: {err.strip()[-400:]}")
        return relay

    def blackout(self, name: str, seconds: float) -> None:
        """Drop everything on `name`'s link, both ways, for `seconds` from now."""
        self._relays[name].command(f"blackout {seconds}")

    def set_loss(self, name: str, up: float, down: float = 0.0) -> None:
        self._relays[name].command(f"loss {up} {down}")

    def relay_counters(self) -> dict[str, str]:
        """Each relay's counters (JSON), once it has stopped."""
        return dict(self._counters)

    def close(self) -> None:
        for name, relay in self._relays.items():
            try:
                relay.stop()
                self._counters[name] = relay.counters
            except BaseException:
                relay.process.kill()  # by PID; the namespaces go below regardless
        self._relays.clear()
        for ns in reversed(self._namespaces):
            # anything still running in it was started by us (the relay, by PID above)
            with contextlib.suppress(NetshapeUnavailable):
                _run("ip", "netns", "del", ns)
        self._namespaces.clear()


# ---------------------------------------------------------------- in-process namespaces

_thread_host = threading.local()


def _enter_netns(netns: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
    finally:
        os.close(fd)


class NamespaceLoop:
    """An asyncio loop in a thread inside `host`'s network namespace."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.loop = asyncio.new_event_loop()
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._main, args=(started,), name=f"netns:{host.netns}", daemon=True
        )
        self._thread.start()
        started.result(timeout=COMMAND_TIMEOUT_S)

    def _main(self, started: concurrent.futures.Future[None]) -> None:
        try:
            _enter_netns(self.host.netns)
        except OSError as exc:
            started.set_exception(exc)
            return
        _thread_host.address = self.host.address
        asyncio.set_event_loop(self.loop)
        started.set_result(None)
        self.loop.run_forever()
        self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        return self.submit(coro).result(timeout=timeout_s)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro` on this loop from another loop."""
        return await asyncio.wrap_future(self.submit(coro))

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=COMMAND_TIMEOUT_S)


def _namespace_address(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    address: str | None = getattr(_thread_host, "address", None)
    return [address] if address is not None and use_ipv4 else []


@contextlib.contextmanager
def namespace_host_addresses() -> Iterator[None]:
    """aioice gathers only the address of the namespace the gathering thread entered."""
    saved: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses
    aioice.ice.get_host_addresses = _namespace_address
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = saved  # type: ignore[assignment]
