from datetime import timedelta

import pytest

from server.kernel.jobs import DEFAULT_POLICY, RetryPolicy


def test_backoff_doubles_from_one_minute_up_to_an_hour() -> None:
    minutes = [DEFAULT_POLICY.backoff(n) / timedelta(minutes=1) for n in range(1, 9)]
    assert minutes == [1, 2, 4, 8, 16, 32, 60, 60]
    assert DEFAULT_POLICY.backoff(0) == timedelta(minutes=1)
    assert DEFAULT_POLICY.backoff(10_000) == timedelta(hours=1)


def test_one_policy_for_every_table() -> None:
    assert (DEFAULT_POLICY.max_attempts, DEFAULT_POLICY.lease) == (6, timedelta(minutes=5))


def test_a_policy_needs_an_attempt_and_a_lease() -> None:
    with pytest.raises(ValueError, match="attempt"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="lease"):
        RetryPolicy(lease=timedelta(0))
