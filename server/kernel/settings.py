"""Typed settings, read only from `ONEDOOR_*` environment variables (twelve-factor).

`Settings.from_env(os.environ)` is called once by the CLI; tests build `Settings(...)` directly.
Nothing here runs at import time.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from server.kernel import clock

PREFIX = "ONEDOOR_"


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], BeforeValidator(_comma_list)]

#: The events a webhook endpoint may subscribe to (docs/api.md#webhooks); "*" is all of them.
WEBHOOK_EVENTS = frozenset(
    {
        "session.started",
        "session.ended",
        "session.no_show",
        "session.outcome_recorded",
        "participant.joined",
        "participant.left",
        "recording.ready",
    }
)


class WebhookEndpoint(BaseModel, frozen=True, extra="forbid"):
    """One receiver of signed webhooks (ONEDOOR_WEBHOOKS is a JSON list of these)."""

    url: str = Field(pattern=r"^https?://", max_length=500)
    secret: SecretStr = Field(min_length=16)
    events: list[str] = Field(min_length=1)

    @field_validator("events")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - WEBHOOK_EVENTS - {"*"})
        if unknown:
            raise ValueError(f"unknown events {unknown}; known: {sorted(WEBHOOK_EVENTS)}")
        return v


def _json_list(value: Any) -> Any:
    if isinstance(value, str):
        return json.loads(value) if value.strip() else []
    return value


class SettingsError(Exception):
    """A setting is invalid; the message names the environment variable."""


class Settings(BaseModel, frozen=True, extra="forbid"):
    data_dir: Path = Path("data")
    #: None: an SQLite file inside data_dir.
    database_url: str | None = None
    #: None: single node, in-process bus and room directory.
    redis_url: str | None = None
    #: None: generated on first run and kept in data_dir/secret_key (0600).
    secret_key: SecretStr | None = None
    host: str = "127.0.0.1"
    #: The address residents and staff open (join links, invites, QR codes). None: derived
    #: from host and port, which is right only on a developer machine.
    public_url: str | None = None
    port: int = Field(default=8080, ge=1, le=65535)
    node_id: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False

    # sign-in and sessions (MLPS level 3: lockout and idle timeout)
    session_idle_timeout_s: int = Field(default=1800, ge=60)
    #: Failures per (username, address) pair before that pair waits; the wait doubles with
    #: each further failure up to login_lockout_s (server/kernel/throttle.py).
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_s: int = Field(default=900, ge=1)
    cookie_secure: bool = False
    #: Two-factor sign-in (TOTP) for staff: "optional" lets enrolled staff use it, "required"
    #: makes everyone enrol at their next sign-in (production, MLPS level 3).
    staff_2fa: Literal["off", "optional", "required"] = "optional"
    #: Failed sign-in attempts per client address per minute (successes do not count).
    login_rate_per_min: int = Field(default=20, ge=1)
    #: Join-link redemptions per client address per minute, shared by all nodes through Redis:
    #: opening a join page (`/join/{token}`) and joining a room with a token on the signaling
    #: socket count one each (a resident's join costs two). Resuming does not count.
    join_rate_per_min: int = Field(default=60, ge=1)
    #: Kiosk registrations (cases created at a self-service kiosk) per client address per minute.
    kiosk_rate_per_min: int = Field(default=30, ge=1)
    max_request_bytes: int = Field(default=1_048_576, ge=1024)
    #: Failed requests (4xx) one client may make per 10 s before each further request waits
    #: `error_tarpit_s` and is refused (429 too_many_errors): a client probing ids, routes or
    #: permissions in a loop slows itself down, not everyone else. The client is the signed-in
    #: staff member, else the address; counted in Redis across nodes when Redis is set.
    #: 0 turns the budget off.
    error_budget_per_10s: int = Field(default=60, ge=0)
    error_tarpit_s: float = Field(default=1.0, ge=0, le=30)

    # media and ICE
    #: Host addresses aioice may gather (empty: every interface). Tests: 127.0.0.1.
    media_host_addresses: CommaList = Field(default_factory=list)
    media_workers: int = Field(default=0, ge=0)  # 0: the SFU runs inside the server process
    media_video_codec: Literal["vp8", "h264"] = "vp8"
    #: Audio first (docs/media.md "Audio first"): video to a participant pauses when its link's
    #: estimate is below `pause_ratio` × what it is sent or the loss it reports on video is above
    #: `pause_loss`, for 2 s; it resumes after at least `min_pause_s` (doubling when a pause
    #: follows a resume within 30 s) once the loss is at most `resume_loss` (a probe: while
    #: paused the estimate follows the audio alone). `resume_ratio`: the margin over what the
    #: current temporal layer needs before a layer probe. Audio is never paused.
    media_video_pause_ratio: float = Field(default=0.85, gt=0, le=10)
    media_video_resume_ratio: float = Field(default=1.2, gt=0, le=10)
    media_video_pause_loss: float = Field(default=0.10, gt=0, le=1)
    media_video_resume_loss: float = Field(default=0.10, ge=0, le=1)
    media_video_min_pause_s: float = Field(default=5.0, ge=0.5, le=600)
    stun_urls: CommaList = Field(default_factory=list)
    turn_urls: CommaList = Field(default_factory=list)
    turn_secret: SecretStr | None = None
    turn_ttl_s: int = Field(default=3600, ge=60)
    recordings_dir: Path | None = None

    # evidence (server.sessions.evidence, docs/evidence.md)
    #: An RFC 3161 time-stamping authority: each evidence manifest gets a timestamp token from
    #: it. None: manifests are signed but not timestamped.
    tsa_url: str | None = None
    #: PEM file with the TSA's certificate (first) and its issuers (the last one trusted as the
    #: root); required with tsa_url. Replies are verified against it on receipt.
    tsa_cert: Path | None = None
    #: With a TSA, how often the audit chain's newest head is time-stamped (server/audit/anchors).
    audit_anchor_every_min: int = Field(default=60, ge=1)
    #: Days after a session ends before the retention job deletes its recorded files (the
    #: signed manifest is kept). 0 keeps them for good.
    retention_days_reception: int = Field(default=3650, ge=0)
    retention_days_mediation: int = Field(default=3650, ge=0)
    #: Days before a mediation agreement's 30-day 司法确认 window closes that its parties (whose
    #: signing links went by SMS) are reminded by SMS. 0 sends no reminder.
    judicial_reminder_days: int = Field(default=7, ge=0)

    #: The job runner on this node (server.kernel.jobs: deadline sweep, deadline notifications,
    #: scheduling reminders). Several nodes may all run it: job claims are leased with SKIP
    #: LOCKED and the sweep takes a lock, so each job is done once.
    background_jobs: bool = True

    # signaling
    signaling_grace_s: float = Field(default=30.0, gt=0)
    room_capacity: int = Field(default=8, ge=2, le=64)
    #: A booked session opens this many minutes before its planned start: from then on it may
    #: start and be ended (server.sessions.service.opens_at).
    session_lobby_open_min: int = Field(default=30, ge=0, le=24 * 60)
    #: A party who has not joined a booked session this many minutes after its planned start
    #: is marked absent; with every party absent the session is a no-show
    #: (server.sessions.no_show).
    session_no_show_min: int = Field(default=15, ge=1, le=24 * 60)

    # the reception queue (远程视频接访)
    #: A call waiting this long is flagged on the reception desk (等待过久).
    queue_flag_after_s: int = Field(default=180, ge=0)
    #: A call nobody took within this time offers the resident a call-back booking.
    queue_callback_after_s: int = Field(default=600, ge=0)

    # notifications: "log" in development, "http" posts JSON to notify_http_url
    notify_backend: Literal["log", "http"] = "log"
    notify_http_url: str | None = None

    # privacy
    #: Secrets in use before the current one: personal data they encrypted stays readable
    #: until `onedoor pii rotate` re-encrypts it under the current secret.
    previous_secret_keys: CommaList = Field(default_factory=list)

    # integrations
    #: Signed webhooks for session events: a JSON list of {url, secret, events}.
    webhooks: Annotated[list[WebhookEndpoint], BeforeValidator(_json_list)] = Field(
        default_factory=list
    )
    log_retention_days: int = Field(default=183, ge=183)  # Network Security Law: >= 6 months

    # case files
    #: The petitioner's evaluation window (评价期限) in days after the reply: the link in the
    #: SMS expires then and the deadline sweep records the case as 未评价. None: the
    #: `evaluation` deadline policy's limit (reference data, seeded as 7 days).
    evaluation_window_days: int | None = Field(default=None, ge=1, le=90)
    #: Collective visits (集体访): the most representatives (代表) a group may choose. The
    #: 信访工作条例 sets 5; a deployment may follow a stricter local rule. At most
    #: MAX_REPRESENTATIVES_CAP (server.cases.validation), the input's hard bound.
    collective_max_representatives: int = Field(default=5, ge=1, le=20)

    #: 签发: a department handler's written reply or refusal waits for the lead department
    #: leader's sign-off before it goes out (server.cases.sign_off). Off: replies go out directly.
    reply_sign_off: bool = True

    #: The district's time zone (an IANA name): times are stored in UTC and shown, printed,
    #: texted and invited in this zone; deadlines count its days (server.kernel.clock).
    timezone: str = "Asia/Shanghai"
    #: A deadline whose last day is a day off (weekend or public holiday, unless a 调休 make-up
    #: workday): "next_working_day" ends it at the end of the next working day (民法典 第二百零三条,
    #: for calendar and working-day limits alike); "none" ends it on its last day whatever that
    #: day is. Read once into the deadline clock (server.cases.deadline_clock.DeadlineClock).
    deadline_holiday_rollover: Literal["next_working_day", "none"] = "next_working_day"
    #: Office hours of a working day ("08:30-12:00,13:30-17:30"): a pause of a working-day
    #: deadline adds back only its office time (docs/cases.md, Deadlines).
    deadline_office_hours: str = "08:30-17:30"
    #: Case numbers: unique and gap-free per site and year.
    case_no_format: str = "{admin_code}-{year}-{seq:06d}"

    @field_validator("queue_callback_after_s")
    @classmethod
    def _callback_after_flag(cls, value: int, info: ValidationInfo) -> int:
        flag = info.data.get("queue_flag_after_s")
        if flag is not None and value < flag:
            raise ValueError(
                f"must not be shorter than ONEDOOR_QUEUE_FLAG_AFTER_S ({flag}): a call is flagged "
                "on the desk before the resident is offered a call back"
            )
        return value

    @model_validator(mode="after")
    def _tsa_cert_with_url(self) -> Self:
        if self.tsa_url and self.tsa_cert is None:
            raise ValueError(
                "ONEDOOR_TSA_CERT is required when ONEDOOR_TSA_URL is set (the TSA's certificate)"
            )
        return self

    @field_validator("deadline_office_hours")
    @classmethod
    def _office_hours(cls, value: str) -> str:
        clock.parse_office_hours(value)  # ValueError names the interval
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        clock.zone(value)  # ValueError names the zone
        return value

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
                f"(got {value.split(':', 1)[0]!r})"
            )
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        raw = {k[len(PREFIX) :].lower(): v for k, v in env.items() if k.startswith(PREFIX)}
        try:
            return cls(**raw)
        except ValidationError as e:
            problems = []
            for err in e.errors():
                name = PREFIX + str(err["loc"][0]).upper() if err["loc"] else PREFIX
                msg = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
                problems.append(f"{name}: {msg}")
            raise SettingsError("invalid settings: " + "; ".join(problems)) from None

    # --- derived values -------------------------------------------------------------

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'onedoor.db').resolve()}"

    @property
    def effective_public_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def effective_recordings_dir(self) -> Path:
        return self.recordings_dir or (self.data_dir / "recordings")

    def secret_bytes(self) -> bytes:
        if self.secret_key is None:
            raise SettingsError("ONEDOOR_SECRET_KEY: not set (call ensure_secret_key first)")
        return self.secret_key.get_secret_value().encode()

    def previous_secret_bytes(self) -> tuple[bytes, ...]:
        return tuple(k.encode() for k in self.previous_secret_keys)

    def public_view(self) -> dict[str, Any]:
        """Effective settings with secrets hidden, for `onedoor check`."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            field_value = getattr(self, name)
            if isinstance(field_value, SecretStr) or name == "previous_secret_keys":
                out[PREFIX + name.upper()] = "**********"
            elif name == "webhooks":
                out[PREFIX + name.upper()] = [
                    {"url": e.url, "secret": "**********", "events": e.events}
                    for e in self.webhooks
                ]
            elif name in ("database_url", "redis_url") and value:
                out[PREFIX + name.upper()] = _hide_password(str(value))
            else:
                out[PREFIX + name.upper()] = str(value) if isinstance(value, Path) else value
        out["(effective database)"] = _hide_password(self.effective_database_url)
        return out


def _hide_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def ensure_secret_key(settings: Settings) -> Settings:
    """Return settings with a secret key: the configured one, or one generated on first run and
    kept in `data_dir/secret_key` with 0600 permissions."""
    if settings.secret_key is not None:
        return settings
    # The data dir holds the database and recordings: only the service account may enter it.
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = settings.data_dir / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
    os.chmod(path, 0o600)
    return settings.model_copy(update={"secret_key": SecretStr(path.read_text().strip())})
