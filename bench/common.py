"""Helpers shared by the benchmarks: CPU accounting, percentiles, the `checks` format."""

from __future__ import annotations

import os
import resource
import statistics
import time
from dataclasses import dataclass
from typing import Any


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
