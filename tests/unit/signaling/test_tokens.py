from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from server.sessions.tokens import JoinGrant, issue_join_token, verify_join_token
from signaling import errors
from signaling.tokens import (
    ResumeClaim,
    issue_resume_token,
    join_link_qr_png,
    turn_credentials,
    verify_resume_token,
)

SECRET = b"k" * 32
NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def _grant(**over: object) -> JoinGrant:
    values: dict[str, object] = {
        "jti": "j1", "room_id": "r-1", "identity": "guest:j1", "display_name": "张三",
        "role": "party", "permissions": frozenset({"audio", "video", "chat"}),
        "not_before": NOW, "expires_at": NOW + timedelta(hours=1), "site_id": 7,
    }  # fmt: skip
    values.update(over)
    return JoinGrant(**values)  # type: ignore[arg-type]


def test_join_token_round_trip() -> None:
    token = issue_join_token(SECRET, _grant())
    grant = verify_join_token(SECRET, token, now=NOW + timedelta(minutes=5))
    assert grant == _grant()


@pytest.mark.parametrize(
    ("when", "error"),
    [(NOW - timedelta(minutes=5), errors.TokenInvalid),
     (NOW + timedelta(hours=2), errors.TokenExpired)],
)  # fmt: skip
def test_join_token_time_window(when: datetime, error: type[Exception]) -> None:
    token = issue_join_token(SECRET, _grant())
    with pytest.raises(error):
        verify_join_token(SECRET, token, now=when)


def test_forged_and_cross_audience_tokens_are_refused() -> None:
    with pytest.raises(errors.TokenInvalid):
        verify_join_token(SECRET, issue_join_token(b"other", _grant()), now=NOW)
    claim = ResumeClaim(room_id="r-1", peer_id="p-1", identity="guest:j1", display_name="x",
                        role="party", permissions=frozenset(), is_staff=False, status="joined",
                        site_id=None, site_name="", staff_id=None, jti="j1")  # fmt: skip
    resume = issue_resume_token(SECRET, claim, now=NOW, ttl=timedelta(hours=1))
    with pytest.raises(errors.TokenInvalid):
        verify_join_token(SECRET, resume, now=NOW)
    assert verify_resume_token(SECRET, resume, now=NOW) == claim
    with pytest.raises(errors.ResumeFailed):
        verify_resume_token(SECRET, issue_join_token(SECRET, _grant()), now=NOW)


def test_grant_checks_itself() -> None:
    with pytest.raises(ValueError):
        _grant(expires_at=NOW)


def test_turn_credentials_follow_coturn_rest_scheme() -> None:
    servers = turn_credentials(secret=b"turnsecret", identity="guest:j1", now=NOW, ttl_s=600,
                               stun_urls=["stun:t.test:3478"], turn_urls=["turn:t.test:3478"])  # fmt: skip
    stun, turn = servers
    assert stun.urls == ["stun:t.test:3478"] and stun.username is None
    expiry = int(NOW.timestamp()) + 600
    assert turn.username == f"{expiry}:guest:j1"
    expected = base64.b64encode(
        hmac.new(b"turnsecret", turn.username.encode(), hashlib.sha1).digest()
    ).decode()
    assert turn.credential == expected


def test_no_ice_servers_unless_configured() -> None:
    assert turn_credentials(secret=b"", identity="x", now=NOW, ttl_s=60, stun_urls=[],
                            turn_urls=["turn:t.test"]) == []  # fmt: skip


def test_qr_png() -> None:
    png = join_link_qr_png("https://xf.example.gov.cn/join/abc")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 200
