"""Schemathesis against /api/openapi.json: a few thousand generated requests, no 5xx."""

from __future__ import annotations

import pytest

from bench.fuzz_api import fuzz


@pytest.mark.timeout(600)  # a few thousand real HTTP requests; about a minute on an idle machine
def test_api_answers_every_generated_request_without_server_error() -> None:
    result = fuzz(max_examples=12, roles=("supervisor01", "window01"))
    for run in result["runs"]:
        assert run["exit"] == 0, run["failures"]
    assert result["server_errors_logged"] == 0
    assert result["generated"] >= 1500
