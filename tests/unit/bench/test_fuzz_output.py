"""What `onedoor bench fuzz` reads from schemathesis's report (bench/fuzz_api.py)."""

from __future__ import annotations

from bench.fuzz_api import generated_count, stalls

#: Abridged from a real report (schemathesis 4.32, the PostgreSQL run of 2026-12-04).
REPORT = """
______________________ GET /api/cases/{case_id}/sessions _______________________
1. Test Case ID: Ia5FRG

- ST112 Response time limit exceeded

    Actual: 5164.77ms
    Limit: 5000.00ms

[200] OK:
=================================== SUMMARY ====================================
Failures:
  ❌ ST112 Response time limit exceeded: 1

Test cases:
  43227 generated, 1 found 1 unique failure
"""


def test_each_slow_answer_counts_once() -> None:
    assert stalls(REPORT) == 1
    assert stalls(REPORT.replace("Actual: 5164.77ms", "")) == 0
    assert generated_count(REPORT) == 43227
