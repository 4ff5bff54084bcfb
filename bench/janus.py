"""Janus (Debian's `janus` 1.1.x) as a reference SFU for benchmarks: process control and a
minimal VideoRoom client over the HTTP transport.

`JanusServer` writes a private configuration (only the VideoRoom plugin and the HTTP
transport, bound to one test address, ICE gathering restricted to that address, no STUN/TURN,
no mDNS) into a temp dir and runs `janus` in the foreground. It must run inside a network
namespace whose only non-loopback interface carries that address (Janus never gathers on an
interface flagged loopback; see /work/shared/TESTING.md); `bench.sfu_peer` creates one.

`JanusSession` speaks the Janus API: create → attach → message, with one long-poll task per
session (`GET /janus/<session>?maxev=10`) that routes events to per-handle queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

LIB = Path("/usr/lib/x86_64-linux-gnu/janus")
ALL_PLUGINS = [
    "libjanus_audiobridge.so",
    "libjanus_duktape.so",
    "libjanus_echotest.so",
    "libjanus_lua.so",
    "libjanus_nosip.so",
    "libjanus_recordplay.so",
    "libjanus_sip.so",
    "libjanus_streaming.so",
    "libjanus_textroom.so",
    "libjanus_videocall.so",
    "libjanus_voicemail.so",
]
ALL_TRANSPORTS = [
    "libjanus_mqtt.so",
    "libjanus_nanomsg.so",
    "libjanus_pfunix.so",
    "libjanus_rabbitmq.so",
    "libjanus_websockets.so",
]


def _lib_dir(kind: str) -> Path:
    """Plugin/transport folder of the installed janus (multiarch path, or next to the binary)."""
    for base in (
        LIB,
        Path("/usr/lib/janus"),
        Path("/usr/local/lib/janus"),
        Path("/opt/janus/lib/janus"),
    ):
        if (base / kind).is_dir():
            return base / kind
    raise FileNotFoundError(f"janus {kind} folder not found (is the `janus` package installed?)")


def _disable_list(folder: Path, keep: str) -> str:
    names = {p.name for p in folder.glob("*.so")} | set(ALL_PLUGINS + ALL_TRANSPORTS)
    return ",".join(sorted(n for n in names if n != keep))


def write_config(directory: Path, *, address: str, interface: str, http_port: int) -> Path:
    plugins, transports = _lib_dir("plugins"), _lib_dir("transports")
    (directory / "janus.jcfg").write_text(
        f"""general: {{
	configs_folder = "{directory}"
	plugins_folder = "{plugins}"
	transports_folder = "{transports}"
	events_folder = "{directory}/none"
	loggers_folder = "{directory}/none"
	debug_level = 3
	server_name = "onedoor-bench"
	session_timeout = 60
	protected_folders = ["/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr", "/var"]
}}
certificates: {{
}}
media: {{
	rtp_port_range = "20000-40000"
}}
nat: {{
	nice_debug = false
	full_trickle = false
	ice_lite = false
	ice_tcp = false
	ignore_mdns = true
	ice_enforce_list = "{interface}"
	ipv6 = false
}}
plugins: {{
	disable = "{_disable_list(plugins, "libjanus_videoroom.so")}"
}}
transports: {{
	disable = "{_disable_list(transports, "libjanus_http.so")}"
}}
loggers: {{
	disable = "libjanus_jsonlog.so"
}}
events: {{
	broadcast = false
}}
"""
    )
    (directory / "janus.plugin.videoroom.jcfg").write_text("general: {\n\tevents = false\n}\n")
    (directory / "janus.transport.http.jcfg").write_text(
        f"""general: {{
	json = "plain"
	base_path = "/janus"
	http = true
	port = {http_port}
	ip = "{address}"
	https = false
	events = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
cors: {{
}}
"""
    )
    (directory / "none").mkdir(exist_ok=True)
    return directory / "janus.jcfg"


class JanusServer:
    """`janus` in the foreground with a private config; `stop()` always (also from atexit)."""

    def __init__(self, *, address: str, interface: str, http_port: int = 8088) -> None:
        self.address, self.interface, self.http_port = address, interface, http_port
        self.url = f"http://{address}:{http_port}/janus"
        self.process: subprocess.Popen[bytes] | None = None
        self.dir: Path | None = None
        self.log_path: Path | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, timeout_s: float = 15.0) -> None:
        if shutil.which("janus") is None:
            raise RuntimeError("janus is not installed (apt-get install -y janus)")
        self.dir = Path(tempfile.mkdtemp(prefix="onedoor-janus-"))
        config = write_config(
            self.dir, address=self.address, interface=self.interface, http_port=self.http_port
        )
        self.process = self._spawn(config)
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"janus exited ({self.process.returncode}): {self.log_tail()}"
                    )
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{self.url}/info", timeout=aiohttp.ClientTimeout(1)) as r:
                        info = await r.json(content_type=None)
                        if "janus.plugin.videoroom" in info.get("plugins", {}):
                            self.info = info
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"janus did not answer on {self.url}: {self.log_tail()}")
                await asyncio.sleep(0.1)

    def _spawn(self, config: Path) -> subprocess.Popen[bytes]:
        assert self.dir is not None
        self.log_path = self.dir / "janus.log"
        return subprocess.Popen(
            [
                "janus",
                "-C",
                str(config),
                "-F",
                str(self.dir),
                "-i",
                self.address,
                "-E",
                self.interface,
                "-o",
                "-L",
                str(self.log_path),
                "-N",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


class JanusError(RuntimeError):
    pass


class JanusHandle:
    def __init__(self, session: JanusSession, handle_id: int) -> None:
        self.session, self.id = session, handle_id
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def message(
        self, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Send a plugin message; returns the synchronous reply (`ack` or `success`)."""
        request: dict[str, Any] = {"janus": "message", "body": body}
        if jsep is not None:
            request["jsep"] = jsep
        return await self.session.post(request, path=f"/{self.session.id}/{self.id}")

    async def request(
        self, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A synchronous plugin request (e.g. `create`): returns plugindata.data."""
        reply = await self.message(body, jsep)
        data: dict[str, Any] = reply.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(f"{body.get('request')}: {data['error_code']} {data['error']}")
        return data

    async def wait_event(self, predicate: Any, timeout_s: float = 15.0) -> dict[str, Any]:
        """Next event on this handle that satisfies `predicate`; plugin errors raise."""
        async with asyncio.timeout(timeout_s):
            while True:
                event = await self.events.get()
                data = event.get("plugindata", {}).get("data", {})
                if "error" in data:
                    raise JanusError(f"{data.get('error_code')} {data.get('error')}")
                if predicate(event):
                    return event


class JanusSession:
    """One Janus session with its long-poll task. Use `async with`."""

    def __init__(self, url: str, http: aiohttp.ClientSession) -> None:
        self.url, self.http = url, http
        self.id = 0
        self.handles: dict[int, JanusHandle] = {}
        self._poll: asyncio.Task[None] | None = None
        self.closed = False

    async def post(self, request: dict[str, Any], path: str = "") -> dict[str, Any]:
        request["transaction"] = uuid.uuid4().hex[:12]
        async with self.http.post(self.url + path, json=request) as response:
            reply: dict[str, Any] = await response.json(content_type=None)
        if reply.get("janus") == "error":
            raise JanusError(
                f"{request['janus']}: {reply['error']['code']} {reply['error']['reason']}"
            )
        return reply

    async def __aenter__(self) -> JanusSession:
        reply = await self.post({"janus": "create"})
        self.id = reply["data"]["id"]
        self._poll = asyncio.create_task(self._long_poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            await self.post({"janus": "destroy"}, path=f"/{self.id}")
        if self._poll is not None:
            self._poll.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._poll

    async def attach(self, plugin: str = "janus.plugin.videoroom") -> JanusHandle:
        reply = await self.post(
            {"janus": "attach", "plugin": plugin, "opaque_id": f"bench-{random.getrandbits(32)}"},
            path=f"/{self.id}",
        )
        handle = JanusHandle(self, reply["data"]["id"])
        self.handles[handle.id] = handle
        return handle

    async def _long_poll(self) -> None:
        while not self.closed:
            try:
                async with self.http.get(
                    f"{self.url}/{self.id}",
                    params={"maxev": "10", "rid": str(int(time.time() * 1000))},
                    timeout=aiohttp.ClientTimeout(total=65),
                ) as response:
                    payload = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.2)  # the loop ends once close() set `closed`
                continue
            for event in payload if isinstance(payload, list) else [payload]:
                handle = self.handles.get(event.get("sender", 0))
                if handle is not None:
                    handle.events.put_nowait(event)
