from datetime import UTC, datetime

import pytest

from server.auth import csrf
from server.auth.permissions import PERMISSIONS, Action, allowed, check_role_combination
from server.org.models import ADMIN_ROLES, Role


def test_every_action_has_a_row() -> None:
    assert set(PERMISSIONS) == set(Action)


def test_admins_never_read_case_content_and_only_audit_admin_reads_the_log() -> None:
    for admin in ADMIN_ROLES:
        assert not allowed([admin], Action.case_view)
        assert not allowed([admin], Action.recording_play)
    assert [r for r in Role if allowed([r], Action.audit_read)] == [Role.audit_admin]


@pytest.mark.parametrize(
    "roles",
    [
        [Role.sys_admin, Role.sec_admin],
        [Role.audit_admin, Role.window_officer],
    ],
)
def test_forbidden_role_combinations(roles: list[Role]) -> None:
    with pytest.raises(ValueError):
        check_role_combination(roles)


def test_business_roles_combine() -> None:
    check_role_combination([Role.window_officer, Role.mediator])


def test_csrf_tokens() -> None:
    secret = b"s" * 32
    now = datetime(2026, 12, 2, tzinfo=UTC)
    token = csrf.new_token(secret, now=now)
    assert csrf.matches(secret, token, token, now=now)
    assert not csrf.matches(secret, token, None, now=now)
    assert not csrf.matches(secret, token, csrf.new_token(secret, now=now), now=now)
    forged = "abc.def"
    assert not csrf.matches(secret, forged, forged, now=now)
    assert not csrf.matches(b"other", token, token, now=now)
