"""What a signaling node is configured with: its identity and secrets (`NodeConfig`) and the
limits it enforces on clients, rooms and negotiation (`Limits`). Built once by `ws.py`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from server.sessions.service import DEFAULT_LOBBY_LEAD

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = 64 * 1024
    rate_per_s: float = 30.0
    burst: float = 60.0
    #: Consecutive rate-limited messages before the socket is closed (4429).
    max_violations: int = 200
    max_rooms: int = 500
    max_connections_per_identity: int = 4
    heartbeat_s: float = 20.0
    lease_ms: int = 10_000
    attach_timeout_s: float = 3.0
    room_inbox: int = 10_000
    lane_queue: int = 512
    negotiation_timeout_s: float = 15.0


@dataclass(frozen=True, slots=True)
class NodeConfig:
    node_id: str
    secret: bytes
    grace_s: float
    default_capacity: int
    stun_urls: list[str] = field(default_factory=list)
    turn_urls: list[str] = field(default_factory=list)
    turn_secret: bytes = b""
    turn_ttl_s: int = 3600
    recordings_dir: Path = Path("data/recordings")
    limits: Limits = field(default_factory=Limits)
    #: Joins with a token per client address per minute (None: unlimited); counted with the
    #: node's rate limiter, shared with the join page (ONEDOOR_JOIN_RATE_PER_MIN).
    join_rate_per_min: int | None = None
    #: How long before its planned start a booked session opens (ONEDOOR_SESSION_LOBBY_OPEN_MIN):
    #: before that it can be neither started nor ended.
    lobby_lead: timedelta = DEFAULT_LOBBY_LEAD
