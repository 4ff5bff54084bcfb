"""Fuzzing the signaling WebSocket (issue #21 item 5): does hostile input on `/ws` ever make the
server fail, log a traceback or stall?

A real `onedoor serve` on loopback (SQLite; also PostgreSQL when ONEDOOR_BENCH_PG names a
server). `CONNECTIONS` sockets — staff who joined a room and residents with join tokens
waiting in its lobby — each send mutated messages paced under the per-connection rate limit
(30/s): every client message of docs/signaling.md's examples with a field dropped, given a
hostile value (huge and negative numbers, NUL, 70,000 characters, wrong types), an unknown
field or a made-up type; invalid JSON; binary frames; frames over the size limit. After every
`PING_EVERY` frames a `ping` must get its `pong` within STALL_S (else a stall). A socket the
server closes with a documented code is reopened (counted); an undocumented close is an error.

Reported per database: frames sent, answers by type and error code, closes by code, stalls,
undocumented closes, tracebacks and unhandled errors in the server's log (goal: 0 of the last
four). Bounded: each connection sends `frames / CONNECTIONS`; the whole run ends within the
benchmark's timeout.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import check, smoke
from bench.server_process import ServerProcess, bench_databases, database_env, start_server
from bench.sigclient import PROTOCOL, Staff

ROOT = Path(__file__).resolve().parents[1]
CHECKS = (
    "sqlite_signaling_fuzz_tracebacks",
    "sqlite_signaling_fuzz_stalls",
    "sqlite_signaling_fuzz_bad_closes",
    "sqlite_signaling_fuzz_frames",
)
TIMEOUT = (180.0, 900.0)
FRAMES = 100_000  # at scale 1
CONNECTIONS = 16
RATE_PER_S = 25.0  # per connection, under the server's 30/s
PING_EVERY = 50
STAFF = ("window01", "coord01", "supervisor01", "leader01")
STALL_S = 5.0
#: Close codes docs/signaling.md lists (a fuzzer may earn any of them).
DOCUMENTED_CLOSES = {1000, 1001, 1009, 4400, 4403, 4404, 4409, 4410, 4411, 4429}
HOSTILE: tuple[Any, ...] = (
    None,
    -1,
    0,
    2**31,
    2**63,
    10**30,
    1e308,
    -1e308,
    "",
    "\x00",
    "x" * 70_000,
    "𝕏" * 300,
    "<script>alert(1)</script>",
    [],
    {},
    [1, 2, 3],
    {"a": {"b": {"c": [None]}}},
    True,
    "p-" + "A" * 200,
    "../../etc/passwd",
)


def client_examples() -> list[dict[str, Any]]:
    """Every client message example in docs/signaling.md (```json client blocks)."""
    text = (ROOT / "docs" / "signaling.md").read_text()
    out = []
    for block in re.findall(r"```json client\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def mutate(rng: random.Random, examples: list[dict[str, Any]], n: int) -> str | bytes:
    """One hostile frame (text, or bytes for a binary frame)."""
    roll = rng.random()
    if roll < 0.03:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    if roll < 0.06:
        return rng.choice(['{"type": "join"', "null", "[]", '"x"', "{", "\x00", "1e999"])
    if roll < 0.08:
        return json.dumps({"type": "chat", "id": str(n), "text": "长" * 40_000})  # > 64 KiB
    message = dict(rng.choice(examples))
    message["id"] = str(n)
    keys = [k for k in message if k != "id"]
    action = rng.random()
    if action < 0.25 and keys:
        del message[rng.choice(keys)]
    elif action < 0.7 and keys:
        message[rng.choice(keys)] = rng.choice(HOSTILE)
    elif action < 0.8:
        message[rng.choice(["extra", "__proto__", "type2"])] = rng.choice(HOSTILE)
    elif action < 0.9:
        message["type"] = rng.choice(["", "JOIN", "admin", "x" * 100, "ping\x00", "hello"])
    else:
        message["id"] = rng.choice(HOSTILE)
    return json.dumps(message, ensure_ascii=rng.random() < 0.5)


class Fuzzer:
    """One connection's worth of fuzzing, reopened when the server closes it."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        base_url: str,
        *,
        cookie: str | None,
        join: dict[str, Any],
        seed: int,
        examples: list[dict[str, Any]],
    ) -> None:
        self.http, self.base_url, self.cookie, self.join = http, base_url, cookie, join
        self.rng = random.Random(seed)
        self.examples = examples
        self.sent = 0
        self.answers: Counter[str] = Counter()
        self.closes: Counter[int] = Counter()
        self.stalls = 0
        self.bad_closes = 0
        self.pong = asyncio.Event()

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        headers = {"Cookie": self.cookie} if self.cookie else {}
        ws = await self.http.ws_connect(
            self.base_url.replace("http", "ws", 1) + "/ws",
            protocols=(PROTOCOL,),
            headers=headers,
            max_msg_size=1 << 20,
        )
        await ws.send_str(json.dumps({**self.join, "id": "join"}))
        return ws

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            kind = data.get("type", "?")
            self.answers[f"error:{data.get('code')}" if kind == "error" else kind] += 1
            if kind == "pong":
                self.pong.set()

    async def run(self, frames: int) -> None:
        interval = 1.0 / RATE_PER_S
        while self.sent < frames:
            ws = await self._open()
            reader = asyncio.create_task(self._read(ws))
            try:
                while self.sent < frames and not ws.closed:
                    frame = mutate(self.rng, self.examples, self.sent)
                    if isinstance(frame, bytes):
                        await ws.send_bytes(frame)
                    else:
                        await ws.send_str(frame)
                    self.sent += 1
                    if self.sent % PING_EVERY == 0 and not ws.closed:
                        self.pong.clear()
                        await ws.send_str(json.dumps({"type": "ping", "id": f"p{self.sent}"}))
                        try:
                            async with asyncio.timeout(STALL_S):
                                await self.pong.wait()
                        except TimeoutError:
                            if not ws.closed:
                                self.stalls += 1
                    await asyncio.sleep(interval)
            except (aiohttp.ClientError, ConnectionResetError):
                pass
            finally:
                if not ws.closed:
                    await ws.close()
                await reader
            code = ws.close_code or 0
            self.closes[code] += 1
            if self.sent < frames and code not in DOCUMENTED_CLOSES:
                self.bad_closes += 1


async def _fuzz(server: ServerProcess, frames: int, seed: int) -> dict[str, Any]:
    examples = client_examples()
    cookie, csrf = await asyncio.to_thread(server.sign_in, "mediator01")
    async with aiohttp.ClientSession() as http:
        host = Staff(http, server.base_url, cookie, csrf)
        session = await host.create_session("fuzz", capacity=50)
        room = {"type": "join", "room_id": session["room_id"]}
        fuzzers: list[tuple[str | None, dict[str, Any]]] = []
        for i in range(CONNECTIONS):
            if i % 4 == 0:  # a staff member, joined (each their own: a second socket of the
                # same identity would replace the first)
                user = STAFF[i // 4 % len(STAFF)]
                staff_cookie, _ = await asyncio.to_thread(server.sign_in, user)
                fuzzers.append((staff_cookie, room))
            else:  # a resident with a join token, in the lobby
                token = await host.issue_token(session["id"], f"居民{i}")
                fuzzers.append((None, {**room, "token": token}))
        runs = [
            Fuzzer(http, server.base_url, cookie=c, join=j, seed=seed + i, examples=examples)
            for i, (c, j) in enumerate(fuzzers)
        ]
        started = time.monotonic()
        await asyncio.gather(*(f.run(frames // CONNECTIONS) for f in runs))
        seconds = time.monotonic() - started
    answers: Counter[str] = Counter()
    closes: Counter[int] = Counter()
    for f in runs:
        answers.update(f.answers)
        closes.update(f.closes)
    return {
        "frames": sum(f.sent for f in runs),
        "seconds": round(seconds, 1),
        "connections": CONNECTIONS,
        "stalls": sum(f.stalls for f in runs),
        "bad_closes": sum(f.bad_closes for f in runs),
        "closes": {str(k): v for k, v in sorted(closes.items())},
        "answers": dict(answers.most_common(25)),
    }


async def _one(database: str, frames: int, tmp: Path) -> dict[str, Any]:
    with database_env(database, label="sigfuzz") as env:
        server = await asyncio.to_thread(start_server, tmp, **env)
        try:
            result = await _fuzz(server, frames, seed=1)
            log = server.log_path.read_text()
        finally:
            server.stop()
    result["tracebacks_logged"] = log.count("Traceback") + log.count("unhandled error")
    if result["tracebacks_logged"]:
        at = log.find("Traceback")
        result["first_traceback"] = log[max(0, at - 300) :][:3000]
    return result


async def run(scale: float = 1.0) -> dict[str, Any]:
    asked = CONNECTIONS * 4 if smoke(scale) else max(CONNECTIONS, int(FRAMES * scale))
    frames = asked // CONNECTIONS * CONNECTIONS  # each connection sends its equal share
    tmp = Path(tempfile.mkdtemp(prefix="onedoor-sigfuzz-"))
    result: dict[str, Any] = {}
    checks = []
    try:
        for label, database in bench_databases():
            one = await _one(database, frames, tmp / label)
            result[label] = one
            checks += [
                check(
                    f"{label}_signaling_fuzz_tracebacks", one["tracebacks_logged"], "<= 0", "lines"
                ),
                check(f"{label}_signaling_fuzz_stalls", one["stalls"], "<= 0", "pings"),
                check(f"{label}_signaling_fuzz_bad_closes", one["bad_closes"], "<= 0", "closes"),
                check(f"{label}_signaling_fuzz_frames", one["frames"], f">= {frames}", "frames"),
            ]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["checks"] = checks
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), ensure_ascii=False, indent=2))
