"""The one permission table: which business roles may perform which action.

Every view, API endpoint and signaling action asks `allowed()` (through
`server.http.auth.require` for HTTP); nothing else decides. Scope (own site, own department,
named handler of a confidential case) is checked by the service that loads the object.

The admin roles are separated (三权分立): sys_admin manages accounts and configuration,
sec_admin permissions and security policy, audit_admin reads the audit log. None of them
reads case content.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from server.org.models import ADMIN_ROLES, Role

R = Role


class Action(enum.StrEnum):
    # organisation
    org_view = "org.view"
    staff_manage = "staff.manage"
    roles_manage = "roles.manage"
    settings_manage = "settings.manage"
    audit_read = "audit.read"
    # cases
    case_create = "case.create"
    case_view = "case.view"
    case_view_all = "case.view_all"
    case_handle = "case.handle"
    case_assign = "case.assign"
    case_supervise = "case.supervise"
    case_extend_approve = "case.extend_approve"
    case_opinion = "case.opinion"
    report_publish = "report.publish"
    case_transfer = "case.transfer"
    case_assess = "case.assess"
    case_exchange = "case.exchange"
    agreement_manage = "agreement.manage"
    agreement_judicial = "agreement.judicial"
    escalation_manage = "escalation.manage"
    red_card_issue = "red_card.issue"
    # sessions (reception and mediation)
    session_create = "session.create"
    session_join = "session.join"
    session_host = "session.host"
    session_invite = "session.invite"
    recording_play = "recording.play"
    queue_answer = "queue.answer"
    queue_call = "queue.call"
    # scheduling
    schedule_view = "schedule.view"
    schedule_book = "schedule.book"
    schedule_manage = "schedule.manage"
    # API tokens (one's own, from a browser session; never a token's scope)
    api_token_manage = "api_token.manage"


_CASE_WORKERS = {
    R.community_agent,
    R.street_coordinator,
    R.centre_supervisor,
    R.window_officer,
    R.dept_handler,
    R.dept_leader,
    R.supervising_leader,
    R.mediator,
    R.expert,
}
_HOSTS = {
    R.street_coordinator,
    R.centre_supervisor,
    R.window_officer,
    R.dept_handler,
    R.dept_leader,
    R.mediator,
}
_ALL_BUSINESS = _CASE_WORKERS

PERMISSIONS: dict[Action, frozenset[Role]] = {
    Action.org_view: frozenset(_ALL_BUSINESS | {R.sys_admin, R.sec_admin}),
    Action.staff_manage: frozenset({R.sys_admin}),
    Action.roles_manage: frozenset({R.sec_admin}),
    Action.settings_manage: frozenset({R.sys_admin}),
    Action.audit_read: frozenset({R.audit_admin}),
    Action.case_create: frozenset(
        {R.community_agent, R.street_coordinator, R.window_officer, R.dept_handler}
    ),
    Action.case_view: frozenset(_CASE_WORKERS),
    Action.case_view_all: frozenset({R.centre_supervisor}),
    Action.case_handle: frozenset(
        {R.window_officer, R.dept_handler, R.dept_leader, R.street_coordinator, R.community_agent}
    ),
    Action.case_assign: frozenset({R.street_coordinator, R.dept_leader, R.centre_supervisor}),
    Action.case_supervise: frozenset({R.centre_supervisor, R.supervising_leader}),
    Action.case_extend_approve: frozenset({R.dept_leader}),
    Action.case_opinion: frozenset({R.expert}),
    Action.report_publish: frozenset({R.centre_supervisor}),
    Action.case_transfer: frozenset(
        {
            R.window_officer,
            R.community_agent,
            R.street_coordinator,
            R.dept_leader,
            R.centre_supervisor,
        }
    ),
    Action.case_assess: frozenset({R.centre_supervisor, R.dept_leader, R.supervising_leader}),
    Action.case_exchange: frozenset({R.centre_supervisor}),
    Action.red_card_issue: frozenset({R.centre_supervisor}),
    Action.agreement_manage: frozenset({R.mediator}),
    # 司法确认: the agreement's own mediator (checked by the service) or the court liaison.
    Action.agreement_judicial: frozenset({R.mediator, R.court_liaison}),
    # 三级抄告 contact lists: configuration (sys_admin) or the centre that issues 抄告.
    Action.escalation_manage: frozenset({R.centre_supervisor, R.sys_admin}),
    Action.session_create: frozenset(_HOSTS),
    Action.session_join: frozenset(_CASE_WORKERS),
    Action.session_host: frozenset(_HOSTS),
    Action.session_invite: frozenset(_HOSTS),
    Action.recording_play: frozenset({R.mediator, R.centre_supervisor, R.dept_leader}),
    Action.queue_answer: frozenset({R.window_officer, R.street_coordinator}),
    Action.queue_call: frozenset({R.community_agent, R.street_coordinator, R.window_officer}),
    Action.schedule_view: frozenset(_CASE_WORKERS),
    Action.schedule_book: frozenset(_HOSTS | {R.community_agent}),
    Action.schedule_manage: frozenset({R.centre_supervisor, R.sys_admin}),
    Action.api_token_manage: frozenset(Role),
}


def allowed(roles: Iterable[Role], action: Action) -> bool:
    granted = PERMISSIONS.get(action, frozenset())
    return any(role in granted for role in roles)


def check_role_combination(roles: Iterable[Role]) -> None:
    """A user may hold several business roles but never two admin roles, and never an admin
    role beside a business role."""
    role_set = set(roles)
    admins = role_set & ADMIN_ROLES
    if len(admins) > 1:
        raise ValueError("a user may not hold two admin roles")
    if admins and role_set - ADMIN_ROLES:
        raise ValueError("an admin role may not be combined with business roles")


@dataclass(frozen=True, slots=True)
class StaffIdentity:
    """Who is signed in, as every view and service sees it."""

    staff_id: int
    username: str
    display_name: str
    site_id: int
    department_id: int | None
    roles: frozenset[Role]
    #: Signed in with an API token: the Actions it was issued for (None: a browser session).
    scopes: frozenset[Action] | None = None
    #: Signed in with an API token: its id (audited with each use).
    token_id: int | None = None
    #: Signed in with a password an administrator set: only /account/password and sign-out
    #: answer until the staff member chooses their own (server/http/auth.py).
    must_change_password: bool = False

    def can(self, action: Action) -> bool:
        """The roles allow `action` and, for an API token, the token's scopes include it."""
        return allowed(self.roles, action) and (self.scopes is None or action in self.scopes)

    @property
    def actor(self) -> str:
        return f"staff:{self.staff_id}"
