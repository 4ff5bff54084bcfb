"""Schemathesis against /api/openapi.json: a few thousand generated requests, no 5xx."""

from __future__ import annotations

from bench.fuzz_api import fuzz


def test_api_answers_every_generated_request_without_server_error() -> None:
    result = fuzz(max_examples=15, roles=("supervisor01", "window01"))
    for run in result["runs"]:
        assert run["exit"] == 0, run["failures"]
    assert result["server_errors_logged"] == 0
    assert result["generated"] >= 2000
