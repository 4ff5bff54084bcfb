"""Join tokens as the sessions domain signs and checks them (server.kernel.signing, purpose
`join`)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from server.kernel.signing import derive_key
from server.sessions.errors import TokenExpired, TokenInvalid
from server.sessions.tokens import (
    JOIN_AUDIENCE,
    LEEWAY_S,
    JoinGrant,
    issue_join_token,
    verify_join_token,
)

SECRET = b"s" * 32
NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


def _grant(**over: object) -> JoinGrant:
    values: dict[str, object] = {
        "jti": "j-1", "room_id": "r-abc", "identity": "guest:j-1", "display_name": "李四",
        "role": "agent", "permissions": frozenset({"audio", "video", "screen", "chat"}),
        "not_before": NOW, "expires_at": NOW + timedelta(hours=2), "site_id": None,
    }  # fmt: skip
    values.update(over)
    return JoinGrant(**values)  # type: ignore[arg-type]


def test_round_trip_keeps_every_claim() -> None:
    token = issue_join_token(SECRET, _grant(site_id=3))
    assert verify_join_token(SECRET, token, now=NOW + timedelta(minutes=1)) == _grant(site_id=3)


def test_format_and_key_are_what_clients_and_other_nodes_expect() -> None:
    token = issue_join_token(SECRET, _grant())
    claims = jwt.decode(
        token,
        derive_key(SECRET, JOIN_AUDIENCE),
        algorithms=["HS256"],
        audience="join",
        options={"verify_exp": False, "verify_nbf": False},
    )
    assert claims["iss"] == "onedoor" and claims["room"] == "r-abc" and claims["sub"] == "guest:j-1"
    assert claims["role"] == "agent" and claims["perms"] == ["audio", "chat", "screen", "video"]
    assert "site" not in claims


def test_expired_token_is_refused_after_the_leeway() -> None:
    token = issue_join_token(SECRET, _grant())
    end = NOW + timedelta(hours=2)
    verify_join_token(SECRET, token, now=end + timedelta(seconds=LEEWAY_S))
    with pytest.raises(TokenExpired) as info:
        verify_join_token(SECRET, token, now=end + timedelta(seconds=LEEWAY_S + 1))
    assert info.value.code == "token_expired"


def test_token_is_not_valid_before_its_start() -> None:
    token = issue_join_token(SECRET, _grant(not_before=NOW + timedelta(hours=1),
                                            expires_at=NOW + timedelta(hours=3)))  # fmt: skip
    with pytest.raises(TokenInvalid):
        verify_join_token(SECRET, token, now=NOW)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_tampered_claims_break_the_signature() -> None:
    header, payload, signature = issue_join_token(SECRET, _grant()).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "host"
    claims["perms"] = ["admit", "moderate"]
    forged = ".".join([header, _b64(json.dumps(claims).encode()), signature])
    with pytest.raises(TokenInvalid) as info:
        verify_join_token(SECRET, forged, now=NOW)
    assert info.value.code == "token_invalid"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 500])
def test_garbage_is_invalid(token: str) -> None:
    with pytest.raises(TokenInvalid):
        verify_join_token(SECRET, token, now=NOW)


def test_another_secret_or_audience_is_refused() -> None:
    with pytest.raises(TokenInvalid):
        verify_join_token(b"o" * 32, issue_join_token(SECRET, _grant()), now=NOW)
    other_audience = jwt.encode(
        {"iss": "onedoor", "aud": "resume", "jti": "j", "sub": "s", "room": "r-abc",
         "name": "x", "role": "party", "nbf": int(NOW.timestamp()),
         "exp": int(NOW.timestamp()) + 60},
        derive_key(SECRET, "resume"), algorithm="HS256",
    )  # fmt: skip
    with pytest.raises(TokenInvalid):
        verify_join_token(SECRET, other_audience, now=NOW)


def test_a_signed_token_with_an_unknown_role_is_invalid() -> None:
    token = jwt.encode(
        {"iss": "onedoor", "aud": JOIN_AUDIENCE, "jti": "j", "sub": "s", "room": "r-abc",
         "name": "x", "role": "emperor", "perms": [], "nbf": int(NOW.timestamp()),
         "exp": int(NOW.timestamp()) + 60},
        derive_key(SECRET, JOIN_AUDIENCE), algorithm="HS256",
    )  # fmt: skip
    with pytest.raises(TokenInvalid):
        verify_join_token(SECRET, token, now=NOW)
