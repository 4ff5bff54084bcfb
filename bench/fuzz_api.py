"""Property-based fuzzing of the REST API with schemathesis, against /api/openapi.json.

`python -m bench.fuzz_api` (or `onedoor bench fuzz`) runs the long variant (≥ 100,000
generated requests at scale 1: 600 examples per operation and role, three roles, about 44,000
requests a role; 8 concurrent workers) on SQLite and, when ONEDOOR_BENCH_PG names
a PostgreSQL server, on a fresh database there too; CI runs a short one
(tests/integration/server/test_api_fuzz.py) and `make test` this at a tiny scale. Checks per
database: `not_a_server_error` (whatever a client sends, the server answers 4xx, never 5xx),
no traceback in the server's log for rejected input, and no stall (schemathesis's
`--max-response-time`: no answer slower than STALL_S).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import check, smoke
from bench.server_process import bench_databases, database_env, start_server

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
ROLES = ("supervisor01", "window01", "mediator01")
#: Every check this benchmark reports (bench.common marks one it could not measure).
CHECKS = (
    "sqlite_api_fuzz_server_errors",
    "sqlite_api_fuzz_tracebacks",
    "sqlite_api_fuzz_stalls",
    "sqlite_api_fuzz_generated",
)
#: An answer slower than this (seconds) is a stall.
STALL_S = 5.0
WORKERS = 8
TIMEOUT = (600.0, 3600.0)  # overall bound in s: fixed + per unit of scale


def schemathesis(
    base_url: str,
    *,
    cookie: str,
    csrf: str,
    max_examples: int,
    seed: int = 1,
    workers: int = 1,
    stall_s: float | None = None,
    workdir: Path | None = None,
) -> tuple[int, str]:
    result = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            base_url + "/api/openapi.json",
            "-H",
            f"Cookie: {cookie}",
            "-H",
            f"X-CSRF-Token: {csrf}",
            "-c",
            "not_a_server_error",
            *(["--max-response-time", str(stall_s)] if stall_s else []),
            "-w",
            str(workers),
            "-n",
            str(max_examples),
            "--seed",
            str(seed),
            "--suppress-health-check",
            "all",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        cwd=workdir,  # schemathesis keeps its example cache there, not in the checkout
    )
    return result.returncode, result.stdout + result.stderr


def generated_count(output: str) -> int:
    match = re.search(r"(\d+) generated", output)
    return int(match.group(1)) if match else 0


def stalls(output: str) -> int:
    """Answers schemathesis reports slower than `--max-response-time`: each failing case shows
    `Actual: …ms` beside `Limit: …ms` (the summary repeats the check's name, so counting that
    counted each stall twice). Schemathesis reports unique failures, at least one per
    operation that stalled."""
    return len(re.findall(r"Actual: [\d.]+ms\s+Limit: [\d.]+ms", output))


def fuzz(
    max_examples: int,
    *,
    roles: tuple[str, ...] = ROLES,
    database: str = "sqlite",
    workers: int = 1,
    stall_s: float | None = None,
) -> dict[str, Any]:
    """`stall_s`: also fail answers slower than this (the benchmark; never in a CI test)."""
    tmp = Path(tempfile.mkdtemp(prefix="onedoor-fuzz-"))
    with database_env(database, label="fuzz") as env:
        try:
            return _fuzz(tmp, env, max_examples, roles, workers, stall_s)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _fuzz(
    tmp: Path,
    env: dict[str, str],
    max_examples: int,
    roles: tuple[str, ...],
    workers: int,
    stall_s: float | None,
) -> dict[str, Any]:
    # the fuzzer probes the handlers, not the error budget (which would answer most with 429)
    server = start_server(tmp, ONEDOOR_ERROR_BUDGET_PER_10S="0", **env)
    runs: list[dict[str, Any]] = []
    try:
        for seed, username in enumerate(roles, start=1):
            cookie, csrf = server.sign_in(username)
            started = time.monotonic()
            rc, output = schemathesis(
                server.base_url,
                cookie=cookie,
                csrf=csrf,
                max_examples=max_examples,
                seed=seed,
                workers=workers,
                stall_s=stall_s,
                workdir=tmp,
            )
            runs.append(
                {
                    "role_user": username,
                    "exit": rc,
                    "generated": generated_count(output),
                    "stalls": stalls(output),
                    "seconds": round(time.monotonic() - started, 1),
                    # the head names what failed (a runtime error's traceback), the tail sums up
                    "failures": (output[:2500] + "\n…\n" + output[-1500:]) if rc else "",
                }
            )
            # each role's figures as soon as they are known: a long run stopped early keeps them
            summary = {k: v for k, v in runs[-1].items() if k != "failures"}
            print(f"bench fuzz role done: {json.dumps(summary)}", file=sys.stderr, flush=True)
        log = server.log_path.read_text()
    finally:
        server.stop()
    return {
        "runs": runs,
        "workers": workers,
        "server_errors_logged": log.count("unhandled error"),
        "tracebacks_logged": log.count("Traceback"),
        "first_traceback": log[max(0, log.find("Traceback") - 300) :][:3000]
        if "Traceback" in log
        else "",
        "stalls": sum(r["stalls"] for r in runs),
        "generated": sum(r["generated"] for r in runs),
        "seconds": round(sum(r["seconds"] for r in runs), 1),
    }


async def run(scale: float = 1.0) -> dict[str, Any]:
    result: dict[str, Any] = {}
    checks = []
    for label, database in bench_databases():
        if smoke(scale):  # one role, one example per operation: that the fuzzer still runs
            one = await asyncio.to_thread(fuzz, 1, roles=ROLES[:1], database=database, workers=1)
        else:
            one = await asyncio.to_thread(
                fuzz,
                max(5, int(600 * scale)),
                database=database,
                workers=WORKERS,
                stall_s=STALL_S,
            )
        result[label] = one
        checks += [
            check(f"{label}_api_fuzz_server_errors", one["server_errors_logged"], "<= 0", "errors"),
            check(f"{label}_api_fuzz_tracebacks", one["tracebacks_logged"], "<= 0", "lines"),
            check(f"{label}_api_fuzz_stalls", one["stalls"], "<= 0", "answers"),
            check(
                f"{label}_api_fuzz_generated",
                one["generated"],
                ">= " + str(int(100_000 * scale)),
                "requests",
            ),
        ]
    result["checks"] = checks
    return result


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), ensure_ascii=False, indent=2))
