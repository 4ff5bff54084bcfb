"""调解期限 (#17 finding 12): the case's first mediation session starts the mediation time limit
(the `mediation` deadline policy, 30 days by default), a later session does not restart it,
and an agreement or 调解不成 stops it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server.cases import deadline_service
from server.cases.models import CaseDeadline
from server.http import keys
from server.sessions import service as sessions
from server.sessions.schemas import SessionKind, SessionOutcome
from tests.component.sessions.test_case_sessions import T0, _register, _staff
from tests.fakes import RecordingNotifier

Client = TestClient[Any, Any]


async def _mediation(client: Client, case_id: int, start: Any) -> int:
    host = await _staff(client, "window01")
    async with client.app[keys.db].begin() as s:
        view = await sessions.create_session(
            s,
            kind=SessionKind.mediation,
            title="工资纠纷调解",
            case_id=case_id,
            host_site_id=host.site_id,
            created_by_id=host.id,
            recording_allowed=False,
            now=start,
        )
        await sessions.go_live(
            s, session_id=view.id, now=start, deadlines=client.app[keys.deadline_clock]
        )
        return view.id


async def _deadline(client: Client, case_id: int) -> CaseDeadline | None:
    async with client.app[keys.db]() as s:
        row: CaseDeadline | None = await s.scalar(
            select(CaseDeadline).where(
                CaseDeadline.case_id == case_id, CaseDeadline.kind == "mediation"
            )
        )
        return row


async def test_the_first_mediation_starts_the_time_limit_and_no_agreement_stops_it(
    app_client: Client,
) -> None:
    case_id, _ = await _register(app_client)
    assert await _deadline(app_client, case_id) is None
    first = await _mediation(app_client, case_id, T0)
    dl = await _deadline(app_client, case_id)
    assert dl is not None and dl.status == "open" and dl.start_at == T0
    assert timedelta(days=30) <= dl.due_at - T0 < timedelta(days=31)
    due = dl.due_at
    async with app_client.app[keys.db].begin() as s:
        await sessions.record_outcome(
            s, session_id=first, outcome=SessionOutcome.adjourned, now=T0 + timedelta(hours=1)
        )
    second = await _mediation(app_client, case_id, T0 + timedelta(days=5))
    dl = await _deadline(app_client, case_id)
    assert dl is not None and dl.status == "open" and dl.due_at == due  # adjourned: still running
    async with app_client.app[keys.db].begin() as s:
        await sessions.record_outcome(
            s,
            session_id=second,
            outcome=SessionOutcome.no_agreement,
            now=T0 + timedelta(days=5, hours=1),
        )
    dl = await _deadline(app_client, case_id)
    assert dl is not None and dl.status == "met"
    assert dl.met_at == T0 + timedelta(days=5, hours=1)


async def test_the_sweep_warns_before_the_mediation_time_limit_ends(app_client: Client) -> None:
    case_id, _ = await _register(app_client)
    await _mediation(app_client, case_id, T0)
    db = app_client.app[keys.db]
    pii = app_client.app[keys.pii]
    await deadline_service.run_deadline_sweep(
        db, now=T0 + timedelta(days=10), notifier=RecordingNotifier(), pii=pii
    )
    dl = await _deadline(app_client, case_id)
    assert dl is not None and dl.warn_level == "none"
    await deadline_service.run_deadline_sweep(
        db, now=T0 + timedelta(days=26), notifier=RecordingNotifier(), pii=pii
    )
    dl = await _deadline(app_client, case_id)
    assert dl is not None and dl.warn_level == "yellow"
