"""`python -m bench [NAME ...] [--scale S]`: run benchmarks, print a summary, keep the JSON."""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import run_benchmark

ORDER = [
    "signaling",
    "sfu",
    "sfu_peer",
    "recording",
    "join",
    "cases",
    "scheduling",
    "hostile",
    "network",
]
RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }


def _write(out: Path, result: dict[str, Any]) -> None:
    out.write_text(json.dumps(result, ensure_ascii=False, indent=2))


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("names", nargs="*", default=ORDER)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    summary: dict[str, Any] = {"machine": machine(), "started": time.time(), "benches": {}}
    failed = False
    for name in args.names:
        module_name = f"bench.{name.replace('-', '_')}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            print(f"{name}: not available ({e})")
            summary["benches"][name] = {"error": str(e)}
            failed = True
            continue
        out = RESULTS / f"{name}.json"
        result = run_benchmark(name, module, args.scale, functools.partial(_write, out))
        summary["benches"][name] = result
        if "error" in result:
            print(f"{name}: FAILED ({result['error']})")
            failed = True
        for check in result.get("checks", []):
            mark = "PASS" if check["pass"] else "FAIL"
            failed |= not check["pass"]
            print(
                f"{name:12s} {check['name']:45s} {check['value']!s:>12} {check['unit']!s:8s} "
                f"goal {check['goal']}  {mark}"
            )
    (RESULTS / "latest.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
