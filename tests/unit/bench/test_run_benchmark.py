"""`bench.common.run_benchmark`: a benchmark always ends with its JSON, every declared check
present (failed with a reason when it could not be measured) and the load average recorded."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.common import check, run_benchmark

ROOT = Path(__file__).resolve().parents[3]


def bench_module(run: Any, checks: tuple[str, ...] = ("a", "b")) -> ModuleType:
    module = ModuleType("fake_bench")
    module.run = run  # type: ignore[attr-defined]
    module.CHECKS = checks  # type: ignore[attr-defined]
    return module


def collect(module: ModuleType, limit_s: float | None = None) -> list[dict[str, Any]]:
    emitted: list[dict[str, Any]] = []
    returned = run_benchmark("fake", module, 0.001, emitted.append, limit_s=limit_s)
    assert emitted == [returned]
    return emitted


def test_a_finished_run_keeps_its_checks_and_gets_the_load() -> None:
    async def run(scale: float) -> dict[str, Any]:
        return {"checks": [check("a", 1, ">= 1", "x"), check("b", 5, "<= 1", "x")]}

    (result,) = collect(bench_module(run))
    assert [(c["name"], c["pass"]) for c in result["checks"]] == [("a", True), ("b", False)]
    assert len(result["load"]["loadavg_start"]) == len(result["load"]["loadavg_end"]) == 3
    assert "error" not in result


def test_a_failing_run_still_reports_every_check_marked_failed() -> None:
    async def run(scale: float) -> dict[str, Any]:
        raise ConnectionError("server gone")

    (result,) = collect(bench_module(run))
    assert result["error"].startswith("ConnectionError: server gone")
    assert [(c["name"], c["pass"], c["value"]) for c in result["checks"]] == [
        ("a", False, None),
        ("b", False, None),
    ]
    assert all(c["error"] == result["error"] for c in result["checks"])


def test_a_run_past_its_bound_is_cancelled_and_cleans_up() -> None:
    cleaned: list[bool] = []

    async def run(scale: float) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()  # never set: only the bound ends this
        finally:
            cleaned.append(True)
        return {}

    (result,) = collect(bench_module(run), limit_s=0.05)
    assert "bound" in result["error"] and cleaned == [True]
    assert {c["name"] for c in result["checks"]} == {"a", "b"}


def test_a_hung_clean_up_is_ended_by_the_watchdog_with_the_json() -> None:
    """Clean-up that ignores cancellation (a stuck thread, say) cannot keep the process."""
    script = textwrap.dedent(
        """
        import json, threading, types
        import bench.common as common
        common.CLEANUP_GRACE_S = 0.2
        async def run(scale):
            import asyncio
            try:
                await asyncio.Event().wait()
            finally:
                threading.Event().wait()  # blocks the loop: cancellation cannot end it
        module = types.ModuleType("hung")
        module.run, module.CHECKS = run, ("a",)
        common.run_benchmark("hung", module, 0.001, lambda r: print(json.dumps(r)), limit_s=0.1)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    result = json_line(done.stdout)
    assert done.returncode == 1 and result["error"].startswith("hung")
    assert [c["name"] for c in result["checks"]] == ["a"]


def json_line(stdout: str) -> dict[str, Any]:
    import json

    (line,) = [line for line in stdout.splitlines() if line.startswith("{")]
    parsed: dict[str, Any] = json.loads(line)
    return parsed
