"""The development notifier logs the message text (a demo's join links come from the log, issue
#16) but never the whole phone number."""

from __future__ import annotations

import logging

import pytest

from server.kernel.notify import LogNotifier


async def test_the_log_shows_the_message_and_a_masked_number(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = LogNotifier()
    with caplog.at_level(logging.INFO, logger="server.kernel.notify"):
        await notifier.send(
            to="13812345678",
            channel="sms",
            subject="调解邀请",
            body="请于 12月4日 09:00 点击 https://xf.example/join/abc 进入调解室",
        )
    text = caplog.text
    assert "https://xf.example/join/abc" in text and "调解邀请" in text
    assert "13812345678" not in text
    assert notifier.outbox[-1]["to"] == "13812345678"
