"""Helpers shared by the benchmarks: CPU accounting, percentiles, the `checks` format, and
`run_benchmark`, which runs one benchmark within a deadline and always ends with its JSON."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

#: After the deadline cancels a benchmark, how long its clean-up (closing peers, stopping
#: servers) may take before the watchdog ends the process with the JSON it has.
CLEANUP_GRACE_S = 30.0
DEFAULT_TIMEOUT = (120.0, 1800.0)  # seconds: fixed part, and per unit of scale
#: Below this scale a benchmark runs its smallest shape (the smoke test in `make test`): every
#: step runs, so nothing can rot unseen, but its figures mean nothing.
SMOKE_BELOW = 0.01


def smoke(scale: float) -> bool:
    return scale < SMOKE_BELOW


def check(name: str, value: float, goal: str, unit: str) -> dict[str, Any]:
    """One goal check; `goal` is like '>= 15' or '<= 0.35'."""
    op, target_text = goal.split()
    target = float(target_text)
    passed = value >= target if op == ">=" else value <= target
    return {"name": name, "value": round(value, 4), "goal": goal, "unit": unit, "pass": passed}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


@dataclass
class CpuMeter:
    """CPU seconds used by this process (and optionally its children) over a wall interval."""

    include_children: bool = False
    _cpu0: float = 0.0
    _wall0: float = 0.0

    def _cpu(self) -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        total = own.ru_utime + own.ru_stime
        if self.include_children:
            ch = resource.getrusage(resource.RUSAGE_CHILDREN)
            total += ch.ru_utime + ch.ru_stime
        return total

    def start(self) -> None:
        self._cpu0, self._wall0 = self._cpu(), time.monotonic()

    def stop(self) -> tuple[float, float]:
        """(cpu seconds, wall seconds) since start."""
        return self._cpu() - self._cpu0, time.monotonic() - self._wall0


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of another process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# ------------------------------------------------------------------------------ running


def plot_path(default: Path) -> Path:
    """Where a benchmark writes its plot: docs/img by default (`make bench`), or the directory
    in ONEDOOR_BENCH_PLOT_DIR (the smoke test, which must leave the work tree as it was)."""
    directory = os.environ.get("ONEDOOR_BENCH_PLOT_DIR")
    return Path(directory) / default.name if directory else default


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timeout_s(module: ModuleType, scale: float) -> float:
    """The benchmark's overall bound: its `TIMEOUT` (fixed seconds, seconds per unit of scale)."""
    fixed, per_scale = getattr(module, "TIMEOUT", DEFAULT_TIMEOUT)
    return float(fixed + per_scale * scale)


def complete_checks(
    checks: list[dict[str, Any]], declared: tuple[str, ...], reason: str
) -> list[dict[str, Any]]:
    """Every declared check appears: one the benchmark did not report is marked failed, with
    `value` None and `error` saying why (a benchmark's own `skipped` entries are kept)."""
    names = {c["name"] for c in checks}
    missing = [
        {"name": n, "value": None, "goal": None, "unit": None, "pass": False, "error": reason}
        for n in declared
        if n not in names
    ]
    return [*checks, *missing]


def failure(name: str, declared: tuple[str, ...], error: str) -> dict[str, Any]:
    return {"bench": name, "error": error, "checks": complete_checks([], declared, error)}


def _kill_children() -> None:
    """Servers, namespaced helpers and browsers this process started (and theirs)."""
    try:
        import psutil
    except ImportError:
        return
    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.send_signal(signal.SIGKILL)


def _where(exc: BaseException) -> str:
    """` (in bench/x.py:N f)`: the innermost frame of ours, so a JSON says which step failed."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/bench/" in f.filename]
    if not frames:
        return ""
    f = frames[-1]
    return f" (in bench/{Path(f.filename).name}:{f.lineno} {f.name})"


async def _bounded(
    name: str, module: ModuleType, scale: float, limit_s: float, **kwargs: Any
) -> dict[str, Any]:
    declared: tuple[str, ...] = tuple(getattr(module, "CHECKS", ()))
    started = time.monotonic()
    load_start = loadavg()
    deadline = asyncio.timeout(limit_s)
    try:
        async with deadline:
            result: dict[str, Any] = await module.run(scale=scale, **kwargs)
        reason = "not reported by the benchmark"
    except TimeoutError as exc:
        if deadline.expired():
            reason = f"TimeoutError: no result within the benchmark's bound of {limit_s:.0f} s"
        else:  # a step of the benchmark timed out (joining a room, say): say where
            reason = f"TimeoutError: {str(exc) or 'a step timed out'}{_where(exc)}"
        result = {"bench": name, "error": reason}
    except Exception as exc:  # one failure must end with the JSON saying what failed
        reason = f"{type(exc).__name__}: {exc}{_where(exc)}"
        result = {"bench": name, "error": reason}
    result["checks"] = complete_checks(list(result.get("checks", [])), declared, reason)
    result.setdefault("load", {})
    result["load"]["loadavg_start"] = load_start
    result["load"]["loadavg_end"] = loadavg()
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    return result


def run_benchmark(
    name: str,
    module: ModuleType,
    scale: float,
    emit: Callable[[dict[str, Any]], None],
    *,
    limit_s: float | None = None,
) -> dict[str, Any]:
    """Run `module.run(scale=...)` within its deadline and hand its JSON to `emit` exactly once.

    On an exception or at the deadline the run is cancelled (its `finally` blocks clean up) and
    the JSON still comes, with an `error` and every declared check that was not measured marked
    failed. A watchdog thread guarantees the end: if clean-up or the event loop's shutdown hangs
    for `CLEANUP_GRACE_S`, it emits what it has, kills this process's children and exits."""
    limit = limit_s if limit_s is not None else timeout_s(module, scale)
    declared: tuple[str, ...] = tuple(getattr(module, "CHECKS", ()))
    lock = threading.Lock()
    emitted: list[dict[str, Any]] = []

    def once(result: dict[str, Any]) -> None:
        with lock:
            if emitted:
                return
            emitted.append(result)
        emit(result)
        sys.stdout.flush()

    def watchdog() -> None:
        once(failure(name, declared, f"hung: no end {limit + CLEANUP_GRACE_S:.0f} s after start"))
        print(f"bench {name}: watchdog ended a hung run", file=sys.stderr, flush=True)
        _kill_children()
        os._exit(0 if passed(emitted[0]) else 1)

    timers: list[threading.Timer] = []

    def arm(after_s: float) -> None:
        for old in timers:
            old.cancel()
        timer = threading.Timer(after_s, watchdog)
        timer.daemon = True
        timer.start()
        timers.append(timer)

    arm(limit + CLEANUP_GRACE_S)

    async def main() -> dict[str, Any]:
        result = await _bounded(name, module, scale, limit)
        once(result)  # before the loop's shutdown, which may wait on stuck threads
        _kill_children()  # a server a failed step did not stop
        arm(CLEANUP_GRACE_S)
        return result

    try:
        return asyncio.run(main())
    finally:
        for timer in timers:
            timer.cancel()


def passed(result: dict[str, Any]) -> bool:
    return "error" not in result and all(c.get("pass") for c in result.get("checks", []))


def print_json(result: dict[str, Any], *, indent: int | None = None) -> None:
    print(json.dumps(result, ensure_ascii=False, indent=indent, default=str))
