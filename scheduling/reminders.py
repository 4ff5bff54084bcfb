"""Invites, updates, cancellations, reminders and room opening: the `scheduled_job` table,
run by the one job runner (server.kernel.jobs: lease, SKIP LOCKED, backoff, attempts), so
they fire after restarts and exactly once across nodes.

`ReminderJobs` is the table's handler: it prepares a job's messages in one transaction (room
opening moves the session to the lobby and queues one message per host) and sends them
outside it; the runner records the result, and `finished` mirrors it on the participant's
invite status. `run_due_reminders` runs one batch of it (tests).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scheduling.ics import Attendee, Invite, Method, build_ics, filename
from scheduling.models import GuestContact, JobKind, JobStatus, ScheduledJob
from scheduling.service import HOST_ROLES, Cipher
from server.kernel import clock, jobs
from server.kernel.notify import Attachment, NotificationFailed, Notifier, NotifyChannel
from server.org import service as org
from server.org.models import Staff
from server.sessions import participants
from server.sessions import service as sessions
from server.sessions.errors import SessionNotFound
from server.sessions.schemas import ParticipantView, SessionState, SessionView

logger = logging.getLogger(__name__)

TOKEN_VALID_AFTER_END = timedelta(hours=2)


class JoinLinkIssuer(Protocol):
    """Makes a participant's join link (server.sessions.service.JoinLinks issues and records
    the token)."""

    async def __call__(
        self,
        session: AsyncSession,
        *,
        call: SessionView,
        participant: ParticipantView,
        not_before: datetime,
        expires_at: datetime,
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class StaffRoomLinks:
    """Staff join from their own signed-in page; guests need a token issuer to get a link."""

    base_url: str

    async def __call__(
        self,
        session: AsyncSession,
        *,
        call: SessionView,
        participant: ParticipantView,
        not_before: datetime,
        expires_at: datetime,
    ) -> str:
        return f"{self.base_url}/rooms/{call.room_id}"


@dataclass(frozen=True, slots=True)
class _Message:
    to: str
    channel: NotifyChannel
    subject: str
    body: str
    attachments: list[Attachment]


def _skip(reason: str, status: jobs.Terminal = "cancelled") -> jobs.GiveUp:
    return jobs.GiveUp(reason, status=status)


SUBJECTS = {
    JobKind.invite: "【信访超市】预约通知",
    JobKind.update: "【信访超市】预约变更",
    JobKind.cancel: "【信访超市】预约取消",
    JobKind.reminder: "【信访超市】会议提醒",
    JobKind.room_open: "【信访超市】会议室已开放",
}


def _local(t: datetime | None, tz: str) -> str:
    return clock.format_local(t, "minute", tz)


async def _prepare(
    session: AsyncSession,
    job: ScheduledJob,
    *,
    now: datetime,
    issuer: JoinLinkIssuer,
    cipher: Cipher,
    tz: str,
) -> list[_Message]:
    try:
        call = await sessions.get_session_by_id(session, session_id=job.session_id)
    except SessionNotFound:
        raise _skip("session gone") from None
    if job.kind == JobKind.room_open and job.participant_id is None:
        # Open the room (scheduled → lobby) and fan out one job per host.
        if call.state == SessionState.scheduled:
            call = await sessions.open_lobby(session, session_id=call.id)
            staff_people = await participants.participants_of(
                session, session_id=call.id, staff_only=True
            )
            host_list = [h for h in staff_people if h.role in HOST_ROLES]
            if not host_list:  # no named host: tell every staff participant
                host_list = staff_people
            for h in host_list:
                session.add(
                    ScheduledJob(
                        session_id=call.id,
                        participant_id=h.id,
                        kind=JobKind.room_open,
                        lead_s=0,
                        due_at=now,
                        status=JobStatus.pending,
                        attempts=0,
                        last_error="",
                        created_at=now,
                    )
                )
            logger.info("session %s opened (lobby)", call.id)
        return []
    if job.participant_id is None:
        raise _skip("no participant")
    try:
        part = await participants.get_participant(session, participant_id=job.participant_id)
    except participants.ParticipantNotFound:
        raise _skip("participant gone") from None
    if (
        job.kind == JobKind.reminder
        and call.planned_start is not None
        and now >= call.planned_start
    ):
        raise _skip("the session has already started")
    if job.kind in (JobKind.reminder, JobKind.room_open) and call.state not in (
        SessionState.scheduled,
        SessionState.lobby,
        SessionState.live,
    ):
        raise _skip(f"the session is {call.state}")
    phone = email = ""
    if part.staff_id is not None:
        staff = await session.get(Staff, part.staff_id)
        phone = staff.phone if staff else ""
    else:
        contact = await session.get(GuestContact, part.id)
        if contact is not None:
            phone = cipher.decrypt(contact.phone_enc) if contact.phone_enc else ""
            email = cipher.decrypt(contact.email_enc) if contact.email_enc else ""
    if not phone and not email:
        raise _skip("no phone or e-mail on file", "failed")
    assert call.planned_start is not None and call.planned_end is not None
    link = ""
    if job.kind != JobKind.cancel:
        link = await issuer(
            session,
            call=call,
            participant=part,
            not_before=call.planned_start - timedelta(minutes=30),
            expires_at=call.planned_end + TOKEN_VALID_AFTER_END,
        )
    site_name = await org.site_name(session, site_id=call.host_site_id)
    when = f"{_local(call.planned_start, tz)}–{_local(call.planned_end, tz)[-5:]}"
    lines = {
        JobKind.invite: f"您好，{part.display_name}：已为您预约「{call.title}」，时间 {when}。",
        JobKind.update: f"您好，{part.display_name}：「{call.title}」时间已变更为 {when}。",
        JobKind.cancel: f"您好，{part.display_name}：原定 {when} 的「{call.title}」已取消。",
        JobKind.reminder: f"提醒：「{call.title}」将于 {_local(call.planned_start, tz)} 开始。",
        JobKind.room_open: f"「{call.title}」会议室已开放，请进入主持。",
    }
    body = lines[job.kind] + (f" 入会链接：{link}" if link else "")
    attachments: list[Attachment] = []
    if job.kind in (JobKind.invite, JobKind.update, JobKind.cancel):
        method: Method = "CANCEL" if job.kind == JobKind.cancel else "REQUEST"
        ics = build_ics(
            invite_for(
                call,
                site_name=site_name,
                url=link,
                now=now,
                tz=tz,
                attendees=[Attendee(part.display_name, email=email, key=part.identity)],
            ),
            method=method,
        )
        attachments.append((filename(call.ical_uid or "", method), ics, "text/calendar"))
    channel: NotifyChannel = "email" if email else "sms"
    return [_Message(email or phone, channel, SUBJECTS[job.kind], body, attachments)]


def invite_for(
    call: SessionView,
    *,
    site_name: str,
    url: str,
    now: datetime,
    tz: str,
    attendees: list[Attendee],
    alarms_before: tuple[timedelta, ...] = (timedelta(minutes=15),),
) -> Invite:
    assert call.planned_start is not None and call.planned_end is not None
    return Invite(
        uid=call.ical_uid or f"session-{call.id}@onedoor",
        sequence=call.ical_sequence,
        start=call.planned_start,
        end=call.planned_end,
        summary=call.title,
        # People read the description as it is: the time in the district's zone, no label.
        description=(
            f"远程视频接访/在线调解，时间 {_local(call.planned_start, tz)}–"
            f"{clock.format_local(call.planned_end, 'time', tz)}。请提前五分钟进入。"
        ),
        location=site_name or "线上视频",
        url=url,
        attendees=attendees,
        alarms_before=alarms_before,
        tz=tz,
        stamp=now,
    )


@dataclass(frozen=True, slots=True)
class ReminderJobs:
    """`scheduled_job` as a job table of server.kernel.jobs."""

    notifier: Notifier
    issuer: JoinLinkIssuer
    cipher: Cipher
    tz: str
    name: str = "reminders"

    @property
    def model(self) -> type[ScheduledJob]:
        return ScheduledJob

    async def perform(
        self, sessionmaker: async_sessionmaker[AsyncSession], job_id: int, *, now: datetime
    ) -> None:
        async with sessionmaker.begin() as session:
            job = await session.get(ScheduledJob, job_id)
            if job is None or job.status != JobStatus.pending:
                raise _skip("job gone")
            messages = await _prepare(
                session, job, now=now, issuer=self.issuer, cipher=self.cipher, tz=self.tz
            )
        for m in messages:
            try:
                await self.notifier.send(
                    to=m.to,
                    channel=m.channel,
                    subject=m.subject,
                    body=m.body,
                    attachments=m.attachments,
                )
            except NotificationFailed as e:
                raise jobs.RetryLater(str(e) or type(e).__name__) from e

    async def finished(
        self, session: AsyncSession, job_id: int, status: str, *, now: datetime
    ) -> None:
        job = await session.get(ScheduledJob, job_id)
        if job is None or job.participant_id is None:
            return
        if job.kind not in (JobKind.invite, JobKind.update, JobKind.cancel):
            return
        await participants.set_invite_status(
            session,
            participant_ids=[job.participant_id],
            status={
                JobStatus.sent: "sent" if job.kind != JobKind.cancel else "cancelled",
                JobStatus.failed: "failed",
                JobStatus.pending: "retrying",
                JobStatus.cancelled: "none",
            }[JobStatus(status)],
        )


async def run_due_reminders(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    notifier: Notifier,
    issuer: JoinLinkIssuer | None = None,
    cipher: Cipher | None = None,
    tz: str = "Asia/Shanghai",
    limit: int = jobs.BATCH,
) -> int:
    """Run one batch of due jobs; returns how many were sent (room openings count as one
    each). Failures are retried with the runner's backoff, then marked failed."""
    handler = ReminderJobs(
        notifier=notifier,
        issuer=issuer or StaffRoomLinks(""),
        cipher=cipher or _NoCipher(),
        tz=tz,
    )
    report = await jobs.run_due(sessionmaker, handler, now=now, limit=limit)
    return report.sent


class _NoCipher:
    def encrypt(self, plaintext: str) -> str:
        raise RuntimeError("no cipher configured")

    def decrypt(self, token: str) -> str:
        raise RuntimeError("no cipher configured")
