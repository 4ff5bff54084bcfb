"""The one signer: purposes kept apart, expiry, tampering, previous secrets, and the old
formats of each of the six tokens still accepted until their cut-off."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from server.auth import csrf, totp
from server.cases import evaluation
from server.kernel.errors import NotFound
from server.kernel.signing import (
    Legacy,
    SignatureExpired,
    SignatureInvalid,
    Signer,
    derive_key,
)
from server.sessions import errors, recordings, tokens
from web import follow_links

SECRET = b"s" * 32
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_round_trip_returns_the_claims_and_expiry() -> None:
    signer = Signer(SECRET)
    token = signer.sign("csrf", {"n": "x"}, expires_at=NOW + HOUR)
    assert signer.verify("csrf", token, now=NOW) == {"n": "x", "exp": int((NOW + HOUR).timestamp())}


def test_purposes_do_not_cross() -> None:
    signer = Signer(SECRET)
    token = signer.sign("recording_grant", {"s": 1, "c": 2}, expires_at=NOW + HOUR)
    with pytest.raises(SignatureInvalid) as err:
        signer.verify("csrf", token, now=NOW)
    assert err.value.code == "token_invalid"
    # Not only the derived key but also the audience differs: a token signed with the csrf
    # key but claiming another audience is refused too.
    forged = jwt.encode(
        {"aud": "recording_grant", "exp": int((NOW + HOUR).timestamp())},
        derive_key(SECRET, "csrf"),
        algorithm="HS256",
    )
    with pytest.raises(SignatureInvalid):
        signer.verify("csrf", forged, now=NOW)


def test_expiry_is_enforced_against_the_given_time() -> None:
    signer = Signer(SECRET)
    token = signer.sign("follow_link", {"c": 1}, expires_at=NOW + HOUR)
    assert signer.verify("follow_link", token, now=NOW + HOUR)["c"] == 1
    with pytest.raises(SignatureExpired) as err:
        signer.verify("follow_link", token, now=NOW + HOUR + timedelta(seconds=1))
    assert err.value.code == "token_expired"
    assert signer.verify(
        "follow_link", token, now=NOW + HOUR + timedelta(seconds=4), leeway=timedelta(seconds=5)
    )


def test_not_before_is_enforced() -> None:
    signer = Signer(SECRET)
    token = signer.sign("join", {"sub": "a"}, expires_at=NOW + HOUR, not_before=NOW)
    with pytest.raises(SignatureInvalid):
        signer.verify("join", token, now=NOW - timedelta(seconds=10))
    assert signer.verify("join", token, now=NOW)["sub"] == "a"


def test_tampered_or_foreign_tokens_are_refused() -> None:
    signer = Signer(SECRET)
    token = signer.sign("evaluation_link", {"e": 1, "n": "abc"}, expires_at=NOW + HOUR)
    header, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["e"] = 2
    swapped = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
    for bad in (f"{header}.{swapped}.{sig}", token[:-2] + "AA", "", "a.b", None):
        with pytest.raises(SignatureInvalid):
            signer.verify("evaluation_link", bad, now=NOW)
    with pytest.raises(SignatureInvalid):
        Signer(b"other" * 8).verify("evaluation_link", token, now=NOW)
    none_alg = jwt.encode({"aud": "evaluation_link", "exp": 2**40}, "", algorithm="none")
    with pytest.raises(SignatureInvalid):
        signer.verify("evaluation_link", none_alg, now=NOW)


def test_reserved_claims_and_empty_window_are_refused() -> None:
    with pytest.raises(ValueError, match="set by the signer"):
        Signer(SECRET).sign("csrf", {"exp": 1}, expires_at=NOW)
    with pytest.raises(ValueError, match="expire after"):
        Signer(SECRET).sign("csrf", {}, expires_at=NOW, not_before=NOW)


def test_previous_secrets_verify_only_when_given() -> None:
    old = Signer(b"old" * 11).sign("recording_grant", {"s": 1}, expires_at=NOW + HOUR)
    assert Signer(SECRET, previous=(b"old" * 11,)).verify("recording_grant", old, now=NOW)["s"] == 1
    with pytest.raises(SignatureInvalid):
        Signer(SECRET).verify("recording_grant", old, now=NOW)
    # New tokens are always signed with the current secret.
    new = Signer(SECRET, previous=(b"old" * 11,)).sign("csrf", {}, expires_at=NOW + HOUR)
    assert Signer(SECRET).verify("csrf", new, now=NOW) == {"exp": int((NOW + HOUR).timestamp())}


def test_legacy_fallback_is_tried_only_before_its_cutoff_and_not_for_expired_tokens() -> None:
    calls: list[str] = []

    def old(token: str, now: datetime) -> dict[str, Any]:
        calls.append(token)
        if token != "old-format":
            raise SignatureInvalid("no")
        return {"c": 9}

    legacy = Legacy(until=NOW + HOUR, verify=old)
    signer = Signer(SECRET)
    assert signer.verify("follow_link", "old-format", now=NOW, legacy=legacy) == {"c": 9}
    with pytest.raises(SignatureInvalid):
        signer.verify("follow_link", "old-format", now=NOW + HOUR, legacy=legacy)
    expired = signer.sign("follow_link", {"c": 1}, expires_at=NOW - HOUR)
    with pytest.raises(SignatureExpired):
        signer.verify("follow_link", expired, now=NOW, legacy=legacy)
    assert calls == ["old-format"]


# --- the old formats, as they were made before server.kernel.signing -------------------------


def test_old_join_token_still_verifies() -> None:
    key = hmac.new(SECRET, b"onedoor-signaling:onedoor:join", hashlib.sha256).digest()
    claims = {
        "iss": "onedoor", "aud": "onedoor:join", "jti": "j1", "sub": "guest:j1", "room": "r-1",
        "name": "张三", "role": "party", "perms": ["audio"], "nbf": int(NOW.timestamp()),
        "exp": int((NOW + HOUR).timestamp()),
    }  # fmt: skip
    old = jwt.encode(claims, key, algorithm="HS256")
    grant = tokens.verify_join_token(SECRET, old, now=NOW)
    assert (grant.room_id, grant.identity, grant.role) == ("r-1", "guest:j1", "party")
    with pytest.raises(errors.TokenExpired):
        tokens.verify_join_token(SECRET, old, now=NOW + 2 * HOUR)
    with pytest.raises(errors.TokenInvalid):
        tokens.verify_join_token(SECRET, old, now=tokens.LEGACY_UNTIL)
    # An old resume token is no join token.
    resume_key = hmac.new(SECRET, b"onedoor-signaling:onedoor:resume", hashlib.sha256).digest()
    with pytest.raises(errors.TokenInvalid):
        tokens.verify_join_token(SECRET, jwt.encode(claims, resume_key, algorithm="HS256"), now=NOW)


def test_old_csrf_token_passes_a_form_post_but_is_replaced_on_page_load() -> None:
    nonce = "n" * 24
    old = f"{nonce}.{hmac.new(SECRET, b'csrf:' + nonce.encode(), hashlib.sha256).hexdigest()[:32]}"
    assert csrf.matches(SECRET, old, old, now=NOW)
    assert not csrf.well_formed(SECRET, old, now=NOW)  # a GET sets a new cookie
    assert not csrf.matches(SECRET, old, old, now=csrf.LEGACY_UNTIL)
    assert not csrf.matches(b"other" * 8, old, old, now=NOW)
    new = csrf.new_token(SECRET, now=NOW)
    assert csrf.well_formed(SECRET, new, now=NOW + csrf.TTL)
    assert not csrf.well_formed(SECRET, new, now=NOW + csrf.TTL + timedelta(seconds=1))


def test_old_pending_2fa_token_still_verifies() -> None:
    body = json.dumps({"s": 7, "e": None, "x": int(NOW.timestamp()) + 300}).encode()
    sig = hmac.new(SECRET, b"pending-2fa:" + body, hashlib.sha256).hexdigest()
    old = base64.urlsafe_b64encode(body).decode() + "." + sig
    assert totp.read_pending(SECRET, old, now=NOW) == totp.Pending(staff_id=7, enrol_secret=None)
    with pytest.raises(totp.PendingExpired):
        totp.read_pending(SECRET, old, now=NOW + timedelta(seconds=301))
    new = totp.pending_token(SECRET, totp.Pending(staff_id=7, enrol_secret="ABC"), now=NOW)
    assert totp.read_pending(SECRET, new, now=NOW).enrol_secret == "ABC"
    with pytest.raises(totp.PendingExpired):
        totp.read_pending(SECRET, new, now=NOW + timedelta(seconds=totp.PENDING_TTL_S + 1))


def test_old_recording_grant_still_verifies_with_current_or_previous_secret() -> None:
    body = json.dumps({"s": 3, "c": 4, "x": int(NOW.timestamp()) + 60}, separators=(",", ":"))
    old = ""
    for secret in (SECRET, b"old" * 11):
        sig = hmac.new(secret, b"recording-grant:" + body.encode(), hashlib.sha256).hexdigest()
        old = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=") + "." + sig
        grant = recordings.read_grant((SECRET, b"old" * 11), old, staff_id=3, session_id=4, now=NOW)
        assert (grant.staff_id, grant.session_id) == (3, 4)
    with pytest.raises(recordings.ReasonRequired):
        recordings.read_grant((SECRET,), old, staff_id=3, session_id=4, now=NOW)  # old secret
    with pytest.raises(recordings.ReasonRequired):
        recordings.read_grant((SECRET, b"old" * 11), old, staff_id=3, session_id=4, now=NOW + HOUR)
    new = recordings.issue_grant(SECRET, staff_id=3, session_id=4, now=NOW)
    with pytest.raises(recordings.ReasonRequired, match="another"):
        recordings.read_grant((SECRET,), new, staff_id=3, session_id=5, now=NOW)


def test_old_evaluation_link_still_verifies() -> None:
    body = "12.nonce-value"
    key = hashlib.sha256(b"onedoor-evaluation-link" + SECRET).digest()
    old = f"{body}.{hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:32]}"
    stored = hashlib.sha256(b"nonce-value").hexdigest()
    assert evaluation.parse_token(SECRET, old, now=NOW) == (12, stored)
    with pytest.raises(evaluation.InvalidEvaluationLink):
        evaluation.parse_token(SECRET, old[:-1] + "0", now=NOW)
    with pytest.raises(evaluation.InvalidEvaluationLink):
        evaluation.parse_token(SECRET, old, now=evaluation.LEGACY_UNTIL)
    new, new_hash = evaluation.make_token(SECRET, 12, expires_at=NOW)
    assert evaluation.parse_token(SECRET, new, now=NOW) == (12, new_hash)
    with pytest.raises(evaluation.EvaluationLinkExpired):
        evaluation.parse_token(SECRET, new, now=NOW + evaluation.LINK_GRACE + timedelta(seconds=1))


def test_old_follow_link_still_verifies() -> None:
    mac = hmac.new(SECRET, b"onedoor-follow:42", hashlib.sha256).digest()[:12]
    old = f"42.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
    assert follow_links.check_follow_token(SECRET, old, now=NOW) == 42
    with pytest.raises(NotFound):
        follow_links.check_follow_token(SECRET, "43." + old[3:], now=NOW)
    with pytest.raises(NotFound):
        follow_links.check_follow_token(SECRET, old, now=follow_links.LEGACY_FOLLOW_UNTIL)
    new = follow_links.follow_token(SECRET, 42, now=NOW)
    assert follow_links.check_follow_token(SECRET, new, now=NOW + follow_links.FOLLOW_TTL) == 42
    with pytest.raises(NotFound):
        follow_links.check_follow_token(
            SECRET, new, now=NOW + follow_links.FOLLOW_TTL + timedelta(seconds=1)
        )
