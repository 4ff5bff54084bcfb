"""What signaling/ may know about the media plane: plain values and the MediaNode Protocol.

Nothing here imports aiortc; `media/adapter/` is the only package that touches its internals.

    signaling ──accept_offer/accept_answer/add_candidate/close_peer──► MediaNode
    signaling ◄──────────────── events(): MediaEvent ───────────────── MediaNode
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from media.quality import LinkQuality, UpstreamGrade

TrackKind = Literal["audio", "video"]
TrackSource = Literal["microphone", "camera", "screen"]
SdpType = Literal["offer", "answer"]


@dataclass(frozen=True, slots=True)
class IceServer:
    """One entry of RTCConfiguration.iceServers (never empty-by-accident: callers pass a list)."""

    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("IceServer needs at least one url")


@dataclass(frozen=True, slots=True)
class SessionDescription:
    type: SdpType
    sdp: str


@dataclass(frozen=True, slots=True)
class IceCandidate:
    candidate: str
    sdp_mid: str | None = None
    sdp_mline_index: int | None = None


@dataclass(frozen=True, slots=True)
class PublishGrant:
    """What a participant may send; tracks beyond it are never forwarded."""

    audio: bool = True
    video: bool = True
    screen: bool = False


@dataclass(frozen=True, slots=True)
class RecordingFile:
    """One recorded track, as stored in the session record once the recording stops."""

    room_id: str
    peer_id: str
    kind: TrackKind
    path: Path
    sha256: str
    started_at_unix: float
    duration_s: float
    size_bytes: int


# ----- events the media node reports (consumed by signaling) -----


@dataclass(frozen=True, slots=True)
class PeerDescription:
    """The media node wants this description delivered to the peer's browser (a server offer
    for renegotiation, when another participant's tracks were added or removed)."""

    room_id: str
    peer_id: str
    description: SessionDescription


@dataclass(frozen=True, slots=True)
class PeerConnected:
    room_id: str
    peer_id: str


@dataclass(frozen=True, slots=True)
class PeerFailed:
    room_id: str
    peer_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class TrackPublished:
    room_id: str
    peer_id: str
    track_id: str
    kind: TrackKind


@dataclass(frozen=True, slots=True)
class ActiveSpeaker:
    room_id: str
    peer_id: str | None
    levels: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RecordingStopped:
    room_id: str
    files: tuple[RecordingFile, ...]
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class RecordingFailed:
    room_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class VideoPaused:
    """The video `peer_id` receives from `publisher_ids` is paused because its link cannot
    carry it (its audio continues), or resumed (`paused=False`). Not sent for the
    participant's own audio-only choice (`set_receive_video`)."""

    room_id: str
    peer_id: str
    publisher_ids: tuple[str, ...]
    paused: bool


@dataclass(frozen=True, slots=True)
class PublishLimit:
    """`peer_id`'s camera should send at most `max_bps` (None: no limit beyond its own): a
    participant receiving it has a link too weak for more (`media.bandwidth.PublishCapPolicy`).
    Signaling sends that publisher `publish_limit`; its browser caps its encoder."""

    room_id: str
    peer_id: str
    max_bps: int | None


@dataclass(frozen=True, slots=True)
class PeerQuality:
    """The participant's media ended: how its downlink was while connected (for the session
    record). Sent once per peer connection that was sampled at least once."""

    room_id: str
    peer_id: str
    quality: LinkQuality


@dataclass(frozen=True, slots=True)
class UpstreamQuality:
    """How the server receives what `peer_id` publishes changed grade (`media.quality.
    UpstreamMeter`): signaling shows it to the others as that sender's quality."""

    room_id: str
    peer_id: str
    grade: UpstreamGrade


@dataclass(frozen=True, slots=True)
class SubscribedTrack:
    """One track a subscriber receives: its id there (`<publisher>.<kind>.<random>`), whose
    it is and what it carries."""

    track_id: str
    publisher_id: str
    kind: TrackKind
    source: TrackSource


@dataclass(frozen=True, slots=True)
class SubscriberTracks:
    """Everything `peer_id` now receives, sent with each description that changes it (the
    server's offer, or the answer to the subscriber's own offer)."""

    room_id: str
    peer_id: str
    tracks: tuple[SubscribedTrack, ...]


MediaEvent = (
    PeerDescription
    | PeerConnected
    | PeerFailed
    | TrackPublished
    | ActiveSpeaker
    | RecordingStopped
    | RecordingFailed
    | VideoPaused
    | PublishLimit
    | PeerQuality
    | UpstreamQuality
    | SubscriberTracks
)


class MediaNode(Protocol):
    """The media plane as signaling sees it. One server-side peer per (room_id, peer_id).

    media/ imports nothing of ours, so methods raise `media.errors.MediaFailure` (it carries a
    stable `code`); signaling translates it into its typed error message for the client.
    """

    async def accept_offer(
        self,
        *,
        room_id: str,
        peer_id: str,
        offer: SessionDescription,
        ice_servers: list[IceServer],
        grant: PublishGrant,
    ) -> SessionDescription:
        """Create (or renegotiate) the peer's server connection and return the answer."""
        ...

    async def accept_answer(
        self, *, room_id: str, peer_id: str, answer: SessionDescription
    ) -> None:
        """Complete a server-initiated renegotiation (see PeerDescription)."""
        ...

    async def add_candidate(
        self, *, room_id: str, peer_id: str, candidate: IceCandidate | None
    ) -> None: ...

    async def close_peer(self, *, room_id: str, peer_id: str) -> None: ...

    async def set_forwarding(
        self, *, room_id: str, peer_id: str, kind: TrackKind, enabled: bool
    ) -> None:
        """Forced mute: stop (or resume) forwarding this peer's tracks of one kind."""
        ...

    async def request_keyframe(self, *, room_id: str, peer_id: str) -> None:
        """Ask every publisher a (resumed) subscriber receives from for a keyframe."""
        ...

    async def set_receive_video(self, *, room_id: str, peer_id: str, enabled: bool) -> None:
        """The participant's audio-only choice: stop (or resume) forwarding any video to it.
        Its audio, and what it publishes, are not affected."""
        ...

    async def start_recording(self, *, room_id: str, directory: Path) -> None: ...

    async def stop_recording(self, *, room_id: str) -> tuple[RecordingFile, ...]:
        """Stop and return the files; they are also reported once as `RecordingStopped`, the
        event a consumer should store them from (it also covers failures nobody asked for)."""
        ...

    async def close_room(self, *, room_id: str) -> None: ...

    def events(self) -> AsyncIterator[MediaEvent]:
        """One consumer (the signaling layer) reads all events of this node."""
        ...

    async def close(self) -> None: ...
