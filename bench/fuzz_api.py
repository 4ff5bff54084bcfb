"""Property-based fuzzing of the REST API with schemathesis, against /api/openapi.json.

`python -m bench.fuzz_api` (or `onedoor bench fuzz`) runs the long variant (≥ 100,000
generated requests at scale 1); CI runs a short one (tests/integration/server/test_api_fuzz.py).
The check is `not_a_server_error`: whatever a client sends, the server answers 4xx, never 5xx.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import check, smoke
from bench.server_process import start_server

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
ROLES = ("supervisor01", "window01", "mediator01")
#: Every check this benchmark reports (bench.common marks one it could not measure).
CHECKS = (
    "api_fuzz_server_errors",
    "api_fuzz_generated",
)
TIMEOUT = (600.0, 3600.0)  # overall bound in s: fixed + per unit of scale


def schemathesis(
    base_url: str,
    *,
    cookie: str,
    csrf: str,
    max_examples: int,
    seed: int = 1,
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


def fuzz(max_examples: int, *, roles: tuple[str, ...] = ROLES) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="onedoor-fuzz-"))
    # the fuzzer probes the handlers, not the error budget (which would answer most with 429)
    server = start_server(tmp, ONEDOOR_ERROR_BUDGET_PER_10S="0")
    runs = []
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
                workdir=tmp,
            )
            runs.append(
                {
                    "role_user": username,
                    "exit": rc,
                    "generated": generated_count(output),
                    "seconds": round(time.monotonic() - started, 1),
                    "failures": output.split("FAILURES", 1)[1][:4000] if rc else "",
                }
            )
        server_errors = server.log_path.read_text().count("unhandled error")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "runs": runs,
        "server_errors_logged": server_errors,
        "generated": sum(r["generated"] for r in runs),
    }


async def run(scale: float = 1.0) -> dict[str, Any]:
    if smoke(scale):  # one role, one example per operation: that the fuzzer still runs
        result = await asyncio.to_thread(fuzz, 1, roles=ROLES[:1])
    else:
        result = await asyncio.to_thread(fuzz, max(5, int(400 * scale)))
    result["checks"] = [
        check("api_fuzz_server_errors", result["server_errors_logged"], "<= 0", "errors"),
        check(
            "api_fuzz_generated", result["generated"], ">= " + str(int(100_000 * scale)), "requests"
        ),
    ]
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(asyncio.run(run()), ensure_ascii=False, indent=2))
