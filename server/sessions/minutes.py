"""The 调解笔录 / 接访记录 of a session (issue #20 item 2): the one owner of `SessionMinutes`
and `MinutesConfirmation`.

    draft ── freeze (定稿) ──► frozen ── close (生成笔录) ──► closed (PDF)
      ▲ save (autosave, versioned)   ▲ confirm: own link (SMS) or on the mediator's device

- Whoever ran the session (its creator, host or mediator: `recordings.ran_session`, never in
  the unit a confidential case accuses) writes it, during the session or after; each paragraph
  carries the session clock (seconds since the session started) at which it was begun.
- Saves carry the version they were based on; a stale one is refused (`minutes_conflict`), so
  two tabs never overwrite each other silently. A frozen text takes no more edits.
- Each party who took part confirms the frozen text: through their own signed, expiring link
  (purpose `minutes_confirm`, bound to the text's SHA-256; a newer link supersedes older ones)
  or on the mediator's device, typing their full name (recorded as `mediator_device`).
- Closing renders the PDF (the text with its stamps and who confirmed how and when; parties
  who did not confirm are listed as such), notes it on the case timeline and makes it part of
  the evidence manifest (kind `transcript_pdf`).
Every read and write is audited. Times shown are the district's.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit.service import record as audit
from server.auth.permissions import StaffIdentity
from server.cases import queries as cases
from server.cases.access import check_not_accused_unit, masked_name
from server.cases.outbox import ResidentPhone, enqueue
from server.cases.pdf import paragraph as pdf_paragraph
from server.cases.timeline import append_event
from server.kernel import clock
from server.kernel.crypto import PiiCipher
from server.kernel.errors import AppError, Conflict, InvalidInput, NotFound, PermissionDenied
from server.kernel.signing import SignatureExpired, SignatureInvalid, Signer
from server.sessions import composite_jobs
from server.sessions.models import (
    CallSession,
    MinutesConfirmation,
    ParticipantRole,
    SessionMinutes,
    SessionParticipant,
)
from server.sessions.recordings import ran_session

#: Who confirms the 笔录: the parties (and their agents) who took part.
CONFIRMING_ROLES = frozenset({ParticipantRole.party, ParticipantRole.agent})
LINK_TTL = timedelta(days=7)
MAX_PARAGRAPHS = 400
MAX_PARAGRAPH_CHARS = 4000
VIA_LABELS = {"own_link": "本人通过短信链接确认", "mediator_device": "在调解员设备上当面确认"}


class MinutesNotFound(NotFound):
    code, message_zh = "minutes_not_found", "没有这次会话的笔录"


class MinutesConflict(Conflict):
    code, message_zh = "minutes_conflict", "笔录已在别处修改，请刷新后再编辑"


class MinutesFrozen(Conflict):
    code, message_zh = "minutes_frozen", "笔录已定稿，不能再修改"


class MinutesNotFrozen(Conflict):
    code, message_zh = "minutes_not_frozen", "笔录尚未定稿"


class MinutesClosed(Conflict):
    code, message_zh = "minutes_closed", "笔录已生成，确认已结束"


class MinutesWithheld(PermissionDenied):
    code, message_zh = "minutes_withheld", "笔录涉及信访人身份，仅限可以查看信访人信息的人员查阅"


class InvalidMinutesLink(AppError):
    code, http_status, message_zh = "invalid_minutes_link", 404, "笔录确认链接无效"


class MinutesLinkExpired(AppError):
    code, http_status, message_zh = "minutes_link_expired", 410, "笔录确认链接已过期，请联系调解员"


class MinutesLinkSuperseded(AppError):
    code, http_status, message_zh = (
        "minutes_link_superseded",
        410,
        "已向您发送了新的确认链接，请使用最新的短信链接",
    )


@dataclass(frozen=True, slots=True)
class Paragraph:
    at_s: int
    text: str

    @property
    def stamp(self) -> str:
        """The session clock as [h:]mm:ss."""
        h, rest = divmod(max(0, self.at_s), 3600)
        m, s = divmod(rest, 60)
        return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


@dataclass(frozen=True, slots=True)
class SpeakerRow:
    """One participant's speech on the session clock (server.sessions.speech)."""

    name: str
    intervals: list[tuple[int, int]]

    @property
    def spoken_s(self) -> int:
        return sum(b - a for a, b in self.intervals)


def clock_text(seconds: int) -> str:
    return Paragraph(seconds, "").stamp


@dataclass(frozen=True, slots=True)
class PartyState:
    participant_id: int
    name: str
    role: str
    confirmed_at: datetime | None = None
    via: str = ""


@dataclass(frozen=True, slots=True)
class MinutesView:
    session_id: int
    title: str
    kind: str
    case_no: str | None
    status: str  # none (nothing written yet), draft, frozen, closed
    version: int
    paragraphs: list[Paragraph]
    started_at: datetime | None
    updated_at: datetime | None
    frozen_at: datetime | None
    closed_at: datetime | None
    parties: list[PartyState] = field(default_factory=list)
    may_edit: bool = False
    has_pdf: bool = False
    #: The reader may see the session but not who the guests are (an accuser's identity):
    #: the text, which names them, and its PDF are withheld; names are masked.
    withheld: bool = False
    #: Who spoke when, on the session clock, once the composite job measured it; and the
    #: length of the timeline in seconds (for drawing it).
    speakers: list[SpeakerRow] = field(default_factory=list)
    timeline_s: int = 0

    @property
    def all_confirmed(self) -> bool:
        return bool(self.parties) and all(p.confirmed_at for p in self.parties)


@dataclass(frozen=True, slots=True)
class LinkView:
    """What a party sees through their own link."""

    session_id: int
    title: str
    kind: str
    started_at: datetime | None
    party_name_masked: str
    paragraphs: list[Paragraph]
    confirmed_at: datetime | None
    expires_at: datetime


def content_hash(paragraphs: list[dict[str, Any]]) -> str:
    body = json.dumps(paragraphs, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def clean_paragraphs(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate and normalise what a client sent: at most MAX_PARAGRAPHS, each with a
    non-negative whole `at_s` and a text without control characters (newlines kept); empty
    paragraphs are dropped. Raises InvalidInput (field `paragraphs`)."""
    if len(raw) > MAX_PARAGRAPHS:
        raise InvalidInput("too many paragraphs", field="paragraphs", reason_zh="段落过多")
    out = []
    for item in raw:
        try:
            at_s = int(item.get("at_s", 0))
            text = str(item.get("text", ""))
        except (TypeError, ValueError, AttributeError):
            raise InvalidInput("a paragraph is malformed", field="paragraphs") from None
        text = text.replace("\r\n", "\n").strip()
        if not text:
            continue
        if not 0 <= at_s < 7 * 24 * 3600:
            raise InvalidInput("a paragraph's time is out of range", field="paragraphs")
        if len(text) > MAX_PARAGRAPH_CHARS:
            raise InvalidInput(
                "a paragraph is too long", field="paragraphs", reason_zh="单个段落过长"
            )
        if any(ord(c) < 32 and c not in "\n\t" for c in text):
            raise InvalidInput("control characters in a paragraph", field="paragraphs")
        out.append({"at_s": at_s, "text": text})
    return out


# ---------------------------------------------------------------------------------- access


async def _call(
    session: AsyncSession, session_id: int
) -> tuple[CallSession, list[SessionParticipant]]:
    call = await session.get(CallSession, session_id)
    if call is None:
        raise NotFound(f"session {session_id} does not exist")
    parts = list(
        await session.scalars(
            select(SessionParticipant)
            .where(SessionParticipant.session_id == session_id)
            .order_by(SessionParticipant.id)
        )
    )
    return call, parts


async def _writer(
    session: AsyncSession, staff: StaffIdentity, session_id: int
) -> tuple[CallSession, list[SessionParticipant]]:
    """The session, for whoever ran it (creator, host, mediator), never a member of the unit a
    confidential case accuses (404 as for the case); 403 for anyone else."""
    call, parts = await _call(session, session_id)
    if not ran_session(staff, call, parts):
        raise PermissionDenied("only the session's host or mediator writes its record")
    if call.case_id is not None:
        await check_not_accused_unit(session, staff=staff, case_id=call.case_id)
    return call, parts


async def _minutes(session: AsyncSession, session_id: int) -> SessionMinutes | None:
    row: SessionMinutes | None = await session.scalar(
        select(SessionMinutes).where(SessionMinutes.session_id == session_id)
    )
    return row


def _paragraphs(row: SessionMinutes | None) -> list[Paragraph]:
    return [Paragraph(int(p["at_s"]), str(p["text"])) for p in (row.paragraphs if row else [])]


def _shown(p: SessionParticipant, mask: bool) -> str:
    """A participant's name as this reader may see it (staff names are never masked)."""
    return masked_name(p.display_name) if mask and p.staff_id is None else p.display_name


async def _parties(
    session: AsyncSession,
    session_id: int,
    parts: list[SessionParticipant],
    *,
    mask: bool = False,
) -> list[PartyState]:
    confirmations = {
        c.participant_id: c
        for c in await session.scalars(
            select(MinutesConfirmation).where(MinutesConfirmation.session_id == session_id)
        )
    }
    out = []
    for p in parts:
        if p.role not in CONFIRMING_ROLES or p.joined_at is None:
            continue  # only those who took part confirm
        c = confirmations.get(p.id)
        out.append(
            PartyState(
                participant_id=p.id,
                name=_shown(p, mask),
                role=p.role.value,
                confirmed_at=c.confirmed_at if c else None,
                via=c.via if c else "",
            )
        )
    return out


async def view(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    session_id: int,
    may_read: bool,
    ip: str = "",
    audit_read: bool = True,
    names_in_clear: bool = True,
) -> MinutesView:
    """The 笔录 as staff see it. `may_read`: the caller checked the viewer may see the session
    record (server.sessions.record); writers (who ran it) may always. `names_in_clear`: the
    session record's rule for the guests' names (an accuser's name only to those who may know
    it); otherwise the parties and speakers are shown masked to readers. Audited as
    `session.minutes_view` when there is text to read."""
    call, parts = await _call(session, session_id)
    may_edit = ran_session(staff, call, parts)
    if may_edit and call.case_id is not None:
        await check_not_accused_unit(session, staff=staff, case_id=call.case_id)
    elif not may_read:
        raise NotFound(f"no session {session_id}")
    row = await _minutes(session, session_id)
    if row is not None and audit_read:
        await audit(
            session,
            actor=staff.actor,
            action="session.minutes_view",
            object_type="call_session",
            object_id=str(session_id),
            ip=ip,
            detail={
                "version": row.version,
                "status": row.status,
                "withheld": not (may_edit or names_in_clear),
            },
        )
    mask = not (may_edit or names_in_clear)
    return MinutesView(
        session_id=call.id,
        title=call.title,
        kind=call.kind.value,
        case_no=await cases.case_number(session, case_id=call.case_id) if call.case_id else None,
        status=row.status if row else "none",
        version=row.version if row else 0,
        paragraphs=[] if mask else _paragraphs(row),
        started_at=call.actual_start,
        updated_at=row.updated_at if row else None,
        frozen_at=row.frozen_at if row else None,
        closed_at=row.closed_at if row else None,
        parties=await _parties(session, session_id, parts, mask=mask),
        may_edit=may_edit,
        has_pdf=bool(row and row.pdf) and not mask,
        withheld=mask,
        **await _speakers(session, call, parts, mask=mask),
    )


async def _speakers(
    session: AsyncSession, call: CallSession, parts: list[SessionParticipant], *, mask: bool
) -> dict[str, Any]:
    measured = await composite_jobs.speaker_timeline(session, session_id=call.id)
    if measured is None:
        return {}
    origin, tracks = measured
    shift = (origin - call.actual_start).total_seconds() if call.actual_start else 0.0
    names = {p.identity: _shown(p, mask) for p in parts}
    rows = [
        SpeakerRow(
            names.get(identity, identity),
            [(max(0, round(a + shift)), max(0, round(b + shift))) for a, b in spans],
        )
        for identity, spans in tracks.items()
    ]
    end = max((b for r in rows for _, b in r.intervals), default=0)
    return {"speakers": rows, "timeline_s": end}


# ---------------------------------------------------------------------------------- writing


async def save(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    session_id: int,
    base_version: int,
    paragraphs: list[dict[str, Any]],
    now: datetime,
    ip: str = "",
) -> int:
    """Store the text (the client's whole list, autosaved); returns the new version.

    Raises MinutesConflict (saved elsewhere since `base_version`), MinutesFrozen, InvalidInput.
    """
    await _writer(session, staff, session_id)
    clean = clean_paragraphs(paragraphs)
    row = await _minutes(session, session_id)
    if row is None:
        if base_version != 0:
            raise MinutesConflict("no such version")
        row = SessionMinutes(
            session_id=session_id, paragraphs=[], version=0, status="draft", links={},
            content_hash="", pdf_sha256="", updated_at=now,
        )  # fmt: skip
        session.add(row)
    if row.status != "draft":
        raise MinutesFrozen("the record is frozen")
    if row.version != base_version:
        raise MinutesConflict(f"saved as version {row.version} meanwhile")
    row.paragraphs = clean
    row.version += 1
    row.updated_at, row.updated_by_id = now, staff.staff_id
    await session.flush()
    await audit(
        session,
        actor=staff.actor,
        action="session.minutes_save",
        object_type="call_session",
        object_id=str(session_id),
        ip=ip,
        detail={"version": row.version, "paragraphs": len(clean)},
        at=now,
    )
    return row.version


async def freeze(
    session: AsyncSession, *, staff: StaffIdentity, session_id: int, version: int, now: datetime
) -> None:
    """定稿: no more edits; the parties confirm this text (its SHA-256)."""
    await _writer(session, staff, session_id)
    row = await _minutes(session, session_id)
    if row is None or not row.paragraphs:
        raise InvalidInput("nothing written yet", field="paragraphs", reason_zh="笔录还没有内容")
    if row.status != "draft":
        raise MinutesFrozen("already frozen")
    if row.version != version:
        raise MinutesConflict(f"saved as version {row.version} meanwhile")
    row.status, row.frozen_at = "frozen", now
    row.content_hash = content_hash(row.paragraphs)
    await audit(
        session,
        actor=staff.actor,
        action="session.minutes_freeze",
        object_type="call_session",
        object_id=str(session_id),
        detail={"version": row.version, "sha256": row.content_hash},
        at=now,
    )


async def _frozen(session: AsyncSession, session_id: int) -> SessionMinutes:
    row = await _minutes(session, session_id)
    if row is None:
        raise MinutesNotFound(f"session {session_id} has no record")
    if row.status == "draft":
        raise MinutesNotFrozen("the record is not frozen yet")
    if row.status == "closed":
        raise MinutesClosed("the record is closed")
    return row


def _party(parts: list[SessionParticipant], participant_id: int) -> SessionParticipant:
    for p in parts:
        if p.id == participant_id and p.role in CONFIRMING_ROLES and p.joined_at is not None:
            return p
    raise InvalidInput("not a party who took part", field="participant")


async def _confirm(
    session: AsyncSession,
    *,
    row: SessionMinutes,
    party: SessionParticipant,
    name: str,
    via: str,
    actor: str,
    staff_id: int | None,
    now: datetime,
    ip: str,
) -> None:
    if await session.scalar(
        select(MinutesConfirmation.id).where(
            MinutesConfirmation.session_id == row.session_id,
            MinutesConfirmation.participant_id == party.id,
        )
    ):
        raise Conflict("this party has confirmed already")
    session.add(
        MinutesConfirmation(
            session_id=row.session_id,
            participant_id=party.id,
            name=name,
            via=via,
            recorded_by_id=staff_id,
            content_hash=row.content_hash,
            confirmed_at=now,
        )
    )
    await audit(
        session,
        actor=actor,
        action="session.minutes_confirm",
        object_type="call_session",
        object_id=str(row.session_id),
        ip=ip,
        detail={"participant_id": party.id, "via": via, "sha256": row.content_hash},
        at=now,
    )


async def confirm_on_device(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    session_id: int,
    participant_id: int,
    typed_name: str,
    now: datetime,
    ip: str = "",
) -> None:
    """The party confirms on the mediator's device, present, typing their full name (which
    must be the name they took part under); recorded as `mediator_device`."""
    _, parts = await _writer(session, staff, session_id)
    row = await _frozen(session, session_id)
    party = _party(parts, participant_id)
    if typed_name.strip() != party.display_name.strip():
        raise InvalidInput(
            "the typed name is not the party's", field="name", reason_zh="姓名与参会当事人不符"
        )
    await _confirm(
        session, row=row, party=party, name=party.display_name, via="mediator_device",
        actor=staff.actor, staff_id=staff.staff_id, now=now, ip=ip,
    )  # fmt: skip


def _issued(now: datetime) -> int:
    return int(now.timestamp() * 1_000_000)


async def send_link(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    session_id: int,
    participant_id: int,
    phone: str,
    secret: bytes,
    pii: PiiCipher,
    base_url: str,
    now: datetime,
    tz: str = clock.DEFAULT_TIMEZONE,
) -> datetime:
    """Text a party their own confirmation link (through the notification outbox); a newer
    link supersedes the older ones. Returns when it expires."""
    call, parts = await _writer(session, staff, session_id)
    row = await _frozen(session, session_id)
    party = _party(parts, participant_id)
    issued = _issued(now)
    expires_at = now + LINK_TTL
    token = Signer(secret).sign(
        "minutes_confirm",
        {"s": session_id, "p": party.id, "h": row.content_hash[:32], "n": issued},
        expires_at=expires_at,
    )
    row.links = {**row.links, str(party.id): issued}
    what = "调解笔录" if call.kind.value == "mediation" else "接访记录"
    await enqueue(
        session,
        key=f"minutes_link:{session_id}:{party.id}:{issued}",
        case_id=call.case_id,
        to=ResidentPhone(phone, pii),
        subject=f"{what}确认",
        body=(
            f"{masked_name(party.display_name)}您好，请阅读并确认{what}："
            f"{base_url.rstrip('/')}/minutes/{token} "
            f"链接有效期至{clock.format_local(expires_at, tz=tz)}（北京时间），仅限本人使用。"
        ),
        now=now,
    )
    await audit(
        session,
        actor=staff.actor,
        action="session.minutes_link_sent",
        object_type="call_session",
        object_id=str(session_id),
        detail={"participant_id": party.id},
        at=now,
    )
    return expires_at


async def _by_link(
    session: AsyncSession, *, token: str, secret: bytes, now: datetime
) -> tuple[SessionMinutes, SessionParticipant, datetime]:
    try:
        claims = Signer(secret).verify("minutes_confirm", token, now=now)
        session_id, pid = int(claims["s"]), int(claims["p"])
        digest, issued = str(claims["h"]), int(claims["n"])
        expires_at = datetime.fromtimestamp(int(claims["exp"]), tz=UTC)
    except SignatureExpired:
        raise MinutesLinkExpired("the confirmation link has expired") from None
    except (SignatureInvalid, KeyError, TypeError, ValueError):
        raise InvalidMinutesLink("no such confirmation link") from None
    row = await _minutes(session, session_id)
    _, parts = await _call(session, session_id)
    if row is None or row.content_hash[:32] != digest:
        raise InvalidMinutesLink("the record changed after the link was made")
    party = next((p for p in parts if p.id == pid), None)
    if party is None:
        raise InvalidMinutesLink("no such party")
    if issued < int(row.links.get(str(pid), 0)):
        raise MinutesLinkSuperseded("a newer link was sent to this party")
    return row, party, expires_at


async def link_view(
    session: AsyncSession, *, token: str, secret: bytes, now: datetime, ip: str = ""
) -> LinkView:
    """The frozen text for the party whose link it is (audited `session.minutes_link_view`)."""
    row, party, expires_at = await _by_link(session, token=token, secret=secret, now=now)
    call, _ = await _call(session, row.session_id)
    confirmed = await session.scalar(
        select(MinutesConfirmation.confirmed_at).where(
            MinutesConfirmation.session_id == row.session_id,
            MinutesConfirmation.participant_id == party.id,
        )
    )
    await audit(
        session,
        actor=f"party:session:{row.session_id}:{party.id}",
        action="session.minutes_link_view",
        object_type="call_session",
        object_id=str(row.session_id),
        ip=ip,
        detail={"participant_id": party.id},
        at=now,
    )
    return LinkView(
        session_id=row.session_id,
        title=call.title,
        kind=call.kind.value,
        started_at=call.actual_start,
        party_name_masked=masked_name(party.display_name),
        paragraphs=_paragraphs(row),
        confirmed_at=confirmed,
        expires_at=expires_at,
    )


async def confirm_with_link(
    session: AsyncSession, *, token: str, secret: bytes, now: datetime, ip: str = ""
) -> None:
    """The party confirms through their own link (`own_link`)."""
    row, party, _ = await _by_link(session, token=token, secret=secret, now=now)
    if row.status == "closed":
        raise MinutesClosed("the record is closed")
    await _confirm(
        session, row=row, party=party, name=party.display_name, via="own_link",
        actor=f"party:session:{row.session_id}:{party.id}", staff_id=None, now=now, ip=ip,
    )  # fmt: skip


# ---------------------------------------------------------------------------------- closing


def render_pdf(v: MinutesView, *, tz: str, font: Path | None = None) -> bytes:
    """The 笔录 as a PDF (blocking: call through asyncio.to_thread). District times."""
    from server.cases.pdf import new_document

    pdf = new_document(font)
    title = "调解笔录" if v.kind == "mediation" else "接访记录"
    pdf.set_font("cjk", size=18)
    pdf.cell(0, 12, title, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=10)
    head = f"会话：{v.title}（编号 {v.session_id}）"
    if v.case_no:
        head += f"    案件编号：{v.case_no}"
    pdf_paragraph(pdf, head, 6)
    if v.started_at:
        pdf_paragraph(pdf, f"开始时间：{clock.format_local(v.started_at, tz=tz)}（北京时间）", 6)
    pdf.ln(3)
    pdf.set_font("cjk", size=12)
    for p in v.paragraphs:
        pdf_paragraph(pdf, f"[{p.stamp}] {p.text}")
        pdf.ln(1)
    pdf.ln(3)
    pdf.set_font("cjk", size=11)
    pdf_paragraph(pdf, "当事人确认：")
    for party in v.parties:
        if party.confirmed_at:
            line = (
                f"{party.name}：已确认（{VIA_LABELS.get(party.via, party.via)}，"
                f"{clock.format_local(party.confirmed_at, tz=tz)}）"
            )
        else:
            line = f"{party.name}：未确认"
        pdf_paragraph(pdf, line)
    if v.frozen_at:
        pdf.ln(2)
        pdf_paragraph(pdf, f"定稿时间：{clock.format_local(v.frozen_at, tz=tz)}（北京时间）", 6)
    return bytes(pdf.output())


async def close(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    session_id: int,
    pdf: bytes,
    now: datetime,
) -> str:
    """Close the confirmation with the rendered PDF (made from `view` by `render_pdf`): kept in
    the database, noted on the case timeline, part of the next evidence manifest. Returns its
    SHA-256."""
    call, _ = await _writer(session, staff, session_id)
    row = await _frozen(session, session_id)
    row.status, row.closed_at = "closed", now
    row.pdf, row.pdf_sha256 = pdf, hashlib.sha256(pdf).hexdigest()
    confirmed = len(
        list(
            await session.scalars(
                select(MinutesConfirmation.id).where(MinutesConfirmation.session_id == session_id)
            )
        )
    )
    if call.case_id is not None:
        await append_event(
            session,
            case_id=call.case_id,
            type="session_minutes",
            at=now,
            payload={"session_id": session_id, "confirmed": confirmed},
        )
    await audit(
        session,
        actor=staff.actor,
        action="session.minutes_close",
        object_type="call_session",
        object_id=str(session_id),
        detail={"sha256": row.pdf_sha256, "confirmed": confirmed},
        at=now,
    )
    return row.pdf_sha256


async def pdf_for(
    session: AsyncSession,
    *,
    staff: StaffIdentity,
    session_id: int,
    may_read: bool,
    names_in_clear: bool = True,
    ip: str = "",
) -> bytes:
    """The closed 笔录's PDF (audited `session.minutes_pdf`); `may_read` and `names_in_clear`
    as for `view`: a reader who may not know the guests gets 403 (the PDF names them)."""
    v = await view(
        session,
        staff=staff,
        session_id=session_id,
        may_read=may_read,
        audit_read=False,
        names_in_clear=names_in_clear,
    )
    if v.withheld:
        raise MinutesWithheld("the record names the parties")
    row = await _minutes(session, session_id)
    if row is None or not row.pdf:
        raise MinutesNotFound(f"session {session_id} has no closed record")
    await audit(
        session,
        actor=staff.actor,
        action="session.minutes_pdf",
        object_type="call_session",
        object_id=str(session_id),
        ip=ip,
        detail={"sha256": row.pdf_sha256},
    )
    return bytes(row.pdf)


def pdf_name(session_id: int) -> str:
    """The PDF's name in the evidence manifest and package."""
    return f"transcript/minutes-{session_id}.pdf"


async def closed_pdf(session: AsyncSession, session_id: int) -> bytes | None:
    """For the evidence manifest: the closed 笔录's PDF bytes, if any."""
    row = await _minutes(session, session_id)
    return bytes(row.pdf) if row is not None and row.pdf else None
