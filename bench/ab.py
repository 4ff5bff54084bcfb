"""A/B of two checkouts on the same machine, interleaved (A, B, A, B…), for bisecting a
benchmark figure that moved. Not a benchmark with goals: a tool (docs/performance.md).

    python -m bench.ab /path/to/old /path/to/new [--rounds 3] [--what signaling-profile sfu]

- `signaling-profile`: each checkout's own `bench.signaling --serve ours`, with cProfile on only
  while 2,000 chats go into a room of 8; prints calls and profiled time per message
  (deterministic: call counts do not depend on the machine's load).
- `sfu`: each checkout's `bench.sfu.measure_room("passthrough", 8, 8 s)`; server cores.

Each measurement runs in a fresh interpreter with PYTHONPATH set to the checkout, so the
checkout's own code (and its own benchmark helpers) is what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import runpy
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOM = 8
#: This file, run by path in the other checkout (which may not have it).
THIS = str(Path(__file__).resolve())


def _profiled_serve(out: str, argv: list[str]) -> None:
    """Run `bench.signaling` with a profiler: SIGUSR1 starts it, SIGUSR2 stops and dumps."""
    prof = cProfile.Profile()
    signal.signal(signal.SIGUSR1, lambda *_: prof.enable())

    def dump(*_: Any) -> None:
        prof.disable()
        prof.dump_stats(out)

    signal.signal(signal.SIGUSR2, dump)
    sys.argv = ["bench.signaling", *argv]
    runpy.run_module("bench.signaling", run_name="__main__", alter_sys=True)


async def _signaling_profile(messages: int) -> dict[str, float]:
    import bench.signaling as bs  # the checkout's own, by PYTHONPATH

    secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="ab-") as tmpdir:
        tmp = Path(tmpdir)
        db_url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
        await bs._seed(db_url, rooms=2, staff=ROOM + 2)
        port = bs._free_port()
        out = str(tmp / "serve.prof")
        argv = ["--serve", "ours", "--port", str(port), "--db", db_url, f"--secret={secret}"]
        argv += ["--data", str(tmp)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            f"import runpy; runpy.run_path({THIS!r})['_profiled_serve']({out!r}, {argv!r})",
            stdout=asyncio.subprocess.DEVNULL,
        )
        server = bs.Server(proc, port)
        try:
            for _ in range(900):
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            load = bs.Load()
            sockets = [await load.connect(server, "bench-0", ours=True) for _ in range(ROOM)]
            await asyncio.sleep(2.0)  # the joins' records are written behind
            load.window, load.delivered = (0, 1 << 62), 0
            proc.send_signal(signal.SIGUSR1)
            await asyncio.sleep(0.2)
            for i in range(messages):
                text = f'{{"type":"chat","id":"c","text":"@T{time.perf_counter_ns()}@"}}'
                await sockets[i % ROOM].send_str(text)
                if i % 50 == 49:
                    await asyncio.sleep(0.02)
            for _ in range(1200):
                if load.delivered >= messages * ROOM:
                    break
                await asyncio.sleep(0.05)
            proc.send_signal(signal.SIGUSR2)
            await asyncio.sleep(1.0)
            await load.close()
        finally:
            await server.stop()
        stats = pstats.Stats(out)
        calls = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
        return {
            "calls_per_message": round(calls / messages, 1),
            "profiled_us_per_message": round(stats.total_tt / messages * 1e6, 1),  # type: ignore[attr-defined]
            "delivered_fraction": round(load.delivered / (messages * ROOM), 3),
        }


def _sfu(window_s: float) -> dict[str, float]:
    import bench.sfu as bsfu
    from bench import media_clip

    async def go() -> dict[str, Any]:
        clip = await asyncio.to_thread(bsfu.encode_clip)
        audio = await asyncio.to_thread(media_clip.encode_opus)
        return await bsfu.measure_room("passthrough", ROOM, window_s, clip, audio)

    row = asyncio.run(go())
    return {k: row[k] for k in ("server_cores", "frames_delivered_ratio")}


def measure_here(what: str, scale: float) -> dict[str, float]:
    if what == "signaling-profile":
        return asyncio.run(_signaling_profile(max(50, int(2000 * scale))))
    return _sfu(max(1.0, 8.0 * scale))


def measure(checkout: Path, what: str, scale: float) -> dict[str, float]:
    """One measurement in a fresh interpreter running `checkout`'s code."""
    code = (
        "import json, runpy, sys; ab = runpy.run_path(sys.argv[1]); "
        "print(json.dumps(ab['measure_here'](sys.argv[2], float(sys.argv[3]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, THIS, what, str(scale)],
        cwd=checkout,
        env={"PYTHONPATH": str(checkout), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--what", nargs="+", default=["signaling-profile", "sfu"])
    args = parser.parse_args()
    for what in args.what:
        for r in range(args.rounds):
            for label, checkout in (("A", args.a), ("B", args.b)):
                result = measure(checkout.resolve(), what, args.scale)
                print(f"{what} round {r + 1} {label} {checkout}: {json.dumps(result)}", flush=True)


if __name__ == "__main__":
    main()
