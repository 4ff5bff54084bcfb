"""Signaling benchmark: `python -m bench.signaling [--scale 1.0]` (`make test`: a smoke run only).

Measured, with every server in its own process and the load clients in this one:
- fan-out: delivered chat messages/s in one 8-person room and across 100 rooms on one node,
  against a bare aiohttp WebSocket broadcast server (raw forwarding, no parsing) in the same run;
  a fixed-rate sweep (not a flood) finds the highest rate each server keeps up with;
- cross-node latency through Redis (participant on node B, room owned by node A), p50/p99;
- memory per idle joined connection over 1,000 connections (server RSS).

`run(scale)` returns the raw figures and a `checks` list of {name, value, goal, unit, pass}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.common import smoke


def log(message: str) -> None:
    print(f"[bench.signaling] {message}", file=sys.stderr, flush=True)


SENDERS_PER_ROOM = 8
#: Every check this benchmark reports (bench.common marks one it could not measure).
CHECKS = (
    "fanout_over_bare",
    "cross_node_p99_ms",
    "idle_connection_kib",
)
TIMEOUT = (600.0, 1200.0)  # overall bound in s: fixed + per unit of scale
STEP_S = 2.0
START_TIMEOUT_S = 90.0  # a server imports the whole service: slow on a loaded machine
JOIN_TIMEOUT_S = 30.0
OK_FRACTION = 0.95
OK_P99_MS = 250.0

# ------------------------------------------------------------------------------ servers


class NullMediaNode:
    """The benchmark measures signaling only."""

    async def events(self) -> AsyncIterator[Any]:
        await asyncio.Event().wait()
        yield None  # pragma: no cover

    async def close(self) -> None:
        return None

    async def close_room(self, *, room_id: str) -> None:
        return None

    async def close_peer(self, *, room_id: str, peer_id: str) -> None:
        return None


def _serve_ours(
    port: int,
    db_url: str,
    redis_url: str | None,
    node_id: str,
    prefix: str,
    secret: str,
    data_dir: str,
) -> None:
    from pydantic import SecretStr

    from server.app import create_app
    from server.auth.permissions import StaffIdentity
    from server.http import keys
    from server.kernel.settings import Settings
    from server.org.models import Role
    from signaling import ws as sws
    from signaling.config import Limits

    @web.middleware
    async def bench_staff(request: web.Request, handler: Any) -> web.StreamResponse:
        sid = int(request.query.get("staff", "0"))
        request[keys.staff] = (
            StaffIdentity(
                staff_id=sid,
                username=f"b{sid}",
                display_name=f"坐席{sid}",
                site_id=1,
                department_id=None,
                roles=frozenset({Role.mediator}),
            )
            if sid
            else None
        )
        response: web.StreamResponse = await handler(request)
        return response

    settings = Settings(
        data_dir=Path(data_dir),
        database_url=db_url,
        redis_url=redis_url,
        node_id=node_id,
        secret_key=SecretStr(secret),
        signaling_grace_s=30,
        join_rate_per_min=10**9,  # every load client joins from 127.0.0.1
        background_jobs=False,
    )
    # The service's own composition root, so whatever it wires (a cipher, a rate limiter...)
    # the benchmark gets too; only the media node, the limits and the sign-in are the bench's.
    app = create_app(settings)
    app.middlewares.append(bench_staff)  # innermost: after the real session middleware

    async def media(_: Any) -> Any:
        return NullMediaNode()

    app[sws.media_factory_key] = media
    app[sws.limits_key] = Limits(
        rate_per_s=1e9, burst=1e9, max_rooms=100_000, heartbeat_s=120, max_violations=10**9
    )
    app[sws.prefix_key] = prefix
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _serve_bare(port: int) -> None:
    """Raw broadcast: every text frame goes unchanged to every socket of the same room."""
    rooms: dict[str, set[web.WebSocketResponse]] = {}

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("onedoor.v1",))
        await ws.prepare(request)
        members = rooms.setdefault(request.query["room"], set())
        members.add(ws)
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    for other in list(members):
                        with contextlib.suppress(ConnectionError, RuntimeError):
                            await other.send_str(msg.data)
        finally:
            members.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ours_args(
    *, db_url: str, node: str, prefix: str, secret: str, data: Path, redis_url: str | None = None
) -> list[str]:
    """`Server.start`'s arguments for our service. Each value goes as `--name=value`: a random
    URL-safe secret begins with "-" one time in 64, and argparse takes `--secret -x…` for a
    missing value and exits with 2 (a smoke run once lost its signaling server so)."""
    values = {"db": db_url, "node": node, "prefix": prefix, "secret": secret, "data": str(data)}
    if redis_url is not None:
        values["redis"] = redis_url
    return ["ours", *(f"--{name}={value}" for name, value in values.items())]


class Server:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.port = proc, port
        self.base = f"http://127.0.0.1:{port}"

    @classmethod
    async def start(cls, *args: str) -> Server:
        port = _free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.signaling",
            "--serve",
            *args,
            "--port",
            str(port),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=None,
        )
        server = cls(proc, port)
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            while time.monotonic() < deadline and proc.returncode is None:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    return server
                except OSError:
                    await asyncio.sleep(0.1)
        except BaseException:
            await server.stop()
            raise
        await server.stop()  # never leave a half-started server behind
        why = f"exited with {proc.returncode}" if proc.returncode is not None else "no port"
        raise RuntimeError(f"server {args[0]} did not start within {START_TIMEOUT_S:.0f} s: {why}")

    def rss_kib(self) -> float:
        import psutil

        return float(psutil.Process(self.proc.pid).memory_info().rss) / 1024

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self.proc.wait()
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


# ------------------------------------------------------------------------------ data


async def _seed(db_url: str, rooms: int, staff: int) -> None:
    from sqlalchemy import insert

    from server.cli import alembic_upgrade
    from server.kernel.db import make_engine, utcnow
    from server.org.models import Site, Staff
    from server.sessions.models import CallSession

    await asyncio.to_thread(alembic_upgrade, db_url)
    engine = make_engine(db_url)
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(
            insert(Site),
            [{"id": 1, "level": "district", "admin_code": "B1", "name": "基准站点", "address": ""}],
        )
        await conn.execute(
            insert(Staff),
            [
                {
                    "id": i,
                    "username": f"b{i}",
                    "display_name": f"坐席{i}",
                    "password_hash": "x",
                    "site_id": 1,
                    "phone": "",
                    "active": True,
                    "failed_logins": 0,
                }
                for i in range(1, staff + 1)
            ],
        )
        await conn.execute(
            insert(CallSession),
            [
                {
                    "room_id": f"bench-{i}",
                    "kind": "mediation",
                    "mode": "video",
                    "state": "scheduled",
                    "title": "",
                    "capacity": SENDERS_PER_ROOM,
                    "recording_allowed": False,
                    "not_public": False,
                    "ical_sequence": 0,
                    "created_at": now,
                }
                for i in range(rooms)
            ],
        )
    await engine.dispose()


# ------------------------------------------------------------------------------ clients


class Load:
    """Connections, fixed-rate senders and counting receivers (no JSON parsing on receipt)."""

    def __init__(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        self.sockets: list[tuple[str, aiohttp.ClientWebSocketResponse]] = []
        self.readers: list[asyncio.Task[None]] = []
        self.window: tuple[int, int] = (0, 0)
        self.delivered = 0
        self.latencies_ms: list[float] = []
        self.staff_ids = iter(range(1, 10**6))
        self.measure_sender: str | None = None

    async def connect(
        self, server: Server, room: str, *, ours: bool
    ) -> aiohttp.ClientWebSocketResponse:
        if ours:
            ws = await self.session.ws_connect(
                f"{server.base}/ws?staff={next(self.staff_ids)}",
                protocols=("onedoor.v1",),
                max_msg_size=0,
            )
            async with asyncio.timeout(JOIN_TIMEOUT_S):  # a refused join must not wait forever
                await ws.receive()  # hello
                await ws.send_str(json.dumps({"type": "join", "id": "j", "room_id": room}))
                while True:
                    msg = await ws.receive()
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        raise RuntimeError(f"join {room}: socket {msg.type.name} before welcome")
                    if '"type":"welcome"' in msg.data:
                        break
                    if '"type":"error"' in msg.data:
                        raise RuntimeError(f"join {room} refused: {msg.data[:300]}")
        else:
            ws = await self.session.ws_connect(
                f"{server.base}/ws?room={room}", protocols=("onedoor.v1",)
            )
        self.sockets.append((room, ws))
        self.readers.append(asyncio.create_task(self._read(ws)))
        return ws

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            text = msg.data
            at = text.find("@T")
            if at < 0:
                continue
            end = text.find("@", at + 2)
            sent_ns = int(text[at + 2 : end])
            lo, hi = self.window
            if lo <= sent_ns < hi:
                self.delivered += 1
                if len(self.latencies_ms) < 200_000:
                    self.latencies_ms.append((time.perf_counter_ns() - sent_ns) / 1e6)

    async def step(
        self,
        rooms: dict[str, list[aiohttp.ClientWebSocketResponse]],
        rate_per_room: float,
        duration_s: float,
    ) -> dict[str, float]:
        """Send `rate_per_room` chats/s in every room (senders in turn) for `duration_s`."""
        self.delivered, self.latencies_ms = 0, []
        tick_s = 0.01
        start = time.perf_counter_ns()
        self.window = (start, start + int(duration_s * 1e9))
        sent = broken = 0
        owed = 0.0
        turn = 0
        ticks = int(duration_s / tick_s)
        for i in range(ticks):
            owed += rate_per_room * tick_s
            n = int(owed)
            owed -= n
            for _ in range(n):
                for sockets in rooms.values():
                    ws = sockets[turn % len(sockets)]
                    text = f'{{"type":"chat","id":"c","text":"@T{time.perf_counter_ns()}@"}}'
                    try:
                        await ws.send_str(text)
                    except aiohttp.ClientConnectionResetError:
                        broken += 1
                        continue
                    sent += 1
                turn += 1
            target = start + int((i + 1) * tick_s * 1e9)
            delay = (target - time.perf_counter_ns()) / 1e9
            if delay > 0:
                await asyncio.sleep(delay)
        await asyncio.sleep(1.0)  # let in-flight messages land
        expected = sent * SENDERS_PER_ROOM
        lat = sorted(self.latencies_ms)
        return {
            "offered_msgs_per_s": sent / duration_s,
            "expected_deliveries_per_s": expected / duration_s,
            "delivered_per_s": self.delivered / duration_s,
            "delivered_fraction": self.delivered / expected if expected else 0.0,
            "p50_ms": _pct(lat, 0.5),
            "p99_ms": _pct(lat, 0.99),
            "sockets_closed_by_server": float(broken),
        }

    async def close(self) -> None:
        for _, ws in self.sockets:
            await ws.close()
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        await self.session.close()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


async def _sweep(
    server: Server, *, ours: bool, rooms: int, rates: Sequence[float], duration_s: float
) -> dict[str, Any]:
    load = Load()
    try:
        room_sockets: dict[str, list[aiohttp.ClientWebSocketResponse]] = {}
        for r in range(rooms):
            name = f"bench-{r}"
            room_sockets[name] = [
                await load.connect(server, name, ours=ours) for _ in range(SENDERS_PER_ROOM)
            ]
        await asyncio.sleep(3.0)  # the joins' session records are written behind
        await load.step(room_sockets, rates[0] / rooms, duration_s)  # warm-up, not counted
        steps = []
        best = 0.0
        for rate in rates:
            result: dict[str, Any] = {}
            ok = False
            for _attempt in range(2):  # one retry: this machine is shared and noisy
                result = await load.step(room_sockets, rate / rooms, duration_s)
                result["rate_total"] = rate
                ok = (
                    result["delivered_fraction"] >= OK_FRACTION
                    and result["p99_ms"] <= OK_P99_MS
                    and not result["sockets_closed_by_server"]
                )
                if ok or result["sockets_closed_by_server"]:
                    break
            result["kept_up"] = ok
            log(
                f"{'ours' if ours else 'bare'} rooms={rooms} rate={rate}/s: "
                f"{result['delivered_per_s']:.0f} delivered/s, "
                f"{result['delivered_fraction']:.3f}, p99 {result['p99_ms']:.1f} ms"
            )
            steps.append(result)
            if not ok:
                break
            best = max(best, result["delivered_per_s"])
        return {"steps": steps, "saturation_delivered_per_s": best}
    finally:
        await load.close()


async def _fanout(tmp: Path, scale: float, db_url: str, secret: str) -> dict[str, Any]:
    duration = 0.5 if smoke(scale) else STEP_S * scale  # a smoke run still delivers some
    out: dict[str, Any] = {}
    rates = [500, 1000, 2000, 3000, 4000, 6000, 8000, 12000, 16000]
    if smoke(scale):
        rates = rates[:2]
    shapes = [("room8", 1)] if smoke(scale) else [("room8", 1), ("rooms100", 100)]
    for label, rooms in shapes:
        for kind in ("bare", "ours"):
            if kind == "bare":
                server = await Server.start("bare")
            else:
                server = await Server.start(
                    *ours_args(
                        db_url=db_url, node=f"fan-{label}", prefix="bench:", secret=secret, data=tmp
                    )
                )
            try:
                out[f"{label}_{kind}"] = await _sweep(
                    server, ours=kind == "ours", rooms=rooms, rates=rates, duration_s=duration
                )
            finally:
                await server.stop()
    return out


async def _cross_node_precise(
    tmp: Path, scale: float, db_url: str, secret: str, redis_url: str
) -> dict[str, float]:
    """Latency of the copy that crosses nodes: B sends, the receiver on A times it (and the
    reverse), one message at a time; plus the same path within one node for comparison."""
    prefix = f"bench:{secrets.token_hex(4)}:"
    a, b = [
        await Server.start(
            *ours_args(
                db_url=db_url,
                node=node,
                prefix=prefix,
                secret=secret,
                data=tmp,
                redis_url=redis_url,
            )
        )
        for node in ("node-a", "node-b")
    ]
    session = aiohttp.ClientSession()
    try:

        async def join(server: Server, sid: int, room: str) -> aiohttp.ClientWebSocketResponse:
            ws = await session.ws_connect(
                f"{server.base}/ws?staff={sid}", protocols=("onedoor.v1",)
            )
            await ws.receive()
            await ws.send_str(json.dumps({"type": "join", "id": "j", "room_id": room}))
            while '"type":"welcome"' not in (await ws.receive()).data:
                pass
            return ws

        async def measure(
            sender: aiohttp.ClientWebSocketResponse,
            receiver: aiohttp.ClientWebSocketResponse,
            n: int,
        ) -> list[float]:
            out = []
            for i in range(n):
                t0 = time.perf_counter_ns()
                await sender.send_str(f'{{"type":"chat","id":"{i}","text":"@T{t0}@"}}')
                while True:
                    msg = await receiver.receive()
                    if f"@T{t0}@" in msg.data:
                        break
                out.append((time.perf_counter_ns() - t0) / 1e6)
                await asyncio.sleep(0.002)
            return out

        n = max(100, int(1000 * scale))
        a1 = await join(a, 901, "bench-1")  # node A owns bench-1
        b1 = await join(b, 902, "bench-1")
        a2 = await join(a, 903, "bench-2")  # same-node reference
        a3 = await join(a, 904, "bench-2")
        await asyncio.sleep(0.3)
        await measure(b1, a1, 50)  # warm-up
        cross = await measure(b1, a1, n) + await measure(a1, b1, n)
        local = await measure(a3, a2, n)
        for ws in (a1, b1, a2, a3):
            await ws.close()
        cross.sort()
        local.sort()
        return {
            "cross_node_p50_ms": _pct(cross, 0.5),
            "cross_node_p99_ms": _pct(cross, 0.99),
            "same_node_p50_ms": _pct(local, 0.5),
            "same_node_p99_ms": _pct(local, 0.99),
            "samples": float(len(cross)),
        }
    finally:
        await session.close()
        await a.stop()
        await b.stop()
        await _clean_redis(redis_url, prefix)


async def _redis_floor(redis_url: str, n: int) -> dict[str, float]:
    """Raw Redis PUBLISH → subscriber round trip on this machine, for context."""
    from redis.asyncio import Redis

    pub, sub = Redis.from_url(redis_url), Redis.from_url(redis_url)
    channel = f"bench:floor:{secrets.token_hex(4)}"
    pubsub = sub.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel)
    lat = []
    try:
        for i in range(n):
            t0 = time.perf_counter_ns()
            await pub.publish(channel, str(i))
            while True:
                msg = await pubsub.get_message(timeout=1.0)
                if msg is not None and msg["type"] == "message":
                    break
            lat.append((time.perf_counter_ns() - t0) / 1e6)
            await asyncio.sleep(0.002)
    finally:
        await pubsub.aclose()
        await pub.aclose()
        await sub.aclose()
    lat.sort()
    return {"redis_pubsub_p50_ms": _pct(lat, 0.5), "redis_pubsub_p99_ms": _pct(lat, 0.99)}


async def _clean_redis(redis_url: str, prefix: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(redis_url)
    keys = [k async for k in redis.scan_iter(match=prefix + "*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def _idle_memory(tmp: Path, db_url: str, secret: str, connections: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind in ("bare", "ours"):
        if kind == "bare":
            server = await Server.start("bare")
        else:
            server = await Server.start(
                *ours_args(db_url=db_url, node="mem", prefix="benchmem:", secret=secret, data=tmp)
            )
        load = Load()
        try:
            for _ in range(SENDERS_PER_ROOM):  # warm code paths and caches
                await load.connect(server, "bench-999", ours=kind == "ours")
            await asyncio.sleep(1.0)
            before = server.rss_kib()
            for i in range(connections):
                await load.connect(server, f"bench-{i // SENDERS_PER_ROOM}", ours=kind == "ours")
            await asyncio.sleep(2.0)
            after = server.rss_kib()
            out[f"{kind}_kib_per_connection"] = (after - before) / connections
        finally:
            await load.close()
            await server.stop()
    return out


async def run(scale: float = 1.0) -> dict[str, Any]:
    redis_url = os.environ.get("ONEDOOR_BENCH_REDIS", "redis://127.0.0.1:6379/0")
    secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="odbench-") as tmpdir:
        tmp = Path(tmpdir)
        db_url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        small = smoke(scale)
        await _seed(db_url, rooms=1000, staff=5000)  # the load's room and staff ids need them
        fanout = await _fanout(tmp, scale, db_url, secret)
        latency = await _cross_node_precise(tmp, scale, db_url, secret, redis_url)
        latency.update(await _redis_floor(redis_url, max(100, int(1000 * scale))))
        log(f"latency: {latency}")
        connections = 20 if small else max(100, int(1000 * scale))
        memory = await _idle_memory(tmp, db_url, secret, connections=connections)
        log(f"memory: {memory}")

    def ratio(label: str) -> float:
        bare = fanout[f"{label}_bare"]["saturation_delivered_per_s"]
        ours = fanout[f"{label}_ours"]["saturation_delivered_per_s"]
        return ours / bare if bare else float("nan")

    ratios = [ratio(label) for label in ("room8", "rooms100") if f"{label}_bare" in fanout]
    # A sweep where the bare server never kept up gives nan: the check fails, it is not skipped.
    fanout_ratio = float("nan") if any(r != r for r in ratios) else min(ratios)
    checks = [
        {
            "name": "fanout_over_bare",
            "value": round(fanout_ratio, 3),
            "goal": 0.7,
            "unit": "ratio",
            "pass": fanout_ratio >= 0.7,
        },
        {
            "name": "cross_node_p99_ms",
            "value": round(latency["cross_node_p99_ms"], 3),
            "goal": 2.0,
            "unit": "ms",
            "pass": latency["cross_node_p99_ms"] <= 2.0,
        },
        {
            "name": "idle_connection_kib",
            "value": round(memory["ours_kib_per_connection"], 2),
            "goal": 32.0,
            "unit": "KiB",
            "pass": memory["ours_kib_per_connection"] <= 32.0,
        },
    ]
    return {
        "scale": scale,
        "fanout": fanout,
        "fanout_ratio_room8": ratio("room8"),
        "fanout_ratio_rooms100": ratio("rooms100") if "rooms100_bare" in fanout else None,
        "latency": latency,
        "memory": memory,
        "checks": checks,
    }


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--serve", choices=["ours", "bare"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--db")
    parser.add_argument("--redis")
    parser.add_argument("--node", default="bench")
    parser.add_argument("--prefix", default="bench:")
    parser.add_argument("--secret", default="")
    parser.add_argument("--data", default=".")
    return parser


def main() -> None:
    args = parser().parse_args()
    if args.serve == "bare":
        _serve_bare(args.port)
    elif args.serve == "ours":
        _serve_ours(args.port, args.db, args.redis, args.node, args.prefix, args.secret, args.data)
    else:
        result = asyncio.run(run(args.scale))
        print(json.dumps(result, indent=2, default=str))
        for check in result["checks"]:
            status = "PASS" if check["pass"] else "FAIL"
            print(
                f"{status} {check['name']}: {check['value']} {check['unit']} (goal {check['goal']})"
            )


if __name__ == "__main__":
    main()
