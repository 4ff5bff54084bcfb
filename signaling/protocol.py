"""The onedoor.v1 wire protocol: every WebSocket message, defined once as pydantic models.

Client messages carry an `id`; the server answers each with `ack` (same `re`) or `error`.
Every model's docstring repeats its JSON example from docs/signaling.md; a test checks that the
docs and the generated JSON Schema agree. A new optional field or message type keeps the
version; any other change bumps `PROTOCOL`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from server.kernel.errors import AppError

# Role and Permission belong to the sessions domain (join tokens carry them).
from server.sessions.schemas import Permission as Permission
from server.sessions.schemas import Role as Role
from signaling.errors import ERROR_CODES

PROTOCOL = "onedoor.v1"
ParticipantStatus = Literal["connecting", "lobby", "joined", "left"]
Quality = Literal["good", "fair", "poor", "lost", "unknown"]
TrackKind = Literal["audio", "video"]

MsgId = Annotated[str, Field(min_length=1, max_length=64)]
PeerId = Annotated[str, Field(min_length=1, max_length=64)]
RoomId = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
Sdp = Annotated[str, Field(min_length=1, max_length=60_000)]
#: Free text that is stored (chat, reasons): no control characters but tab and line breaks (a
#: NUL cannot be stored in PostgreSQL text; found by the signaling fuzz run).
NO_CONTROL = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"


class _Msg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _ClientMsg(_Msg):
    id: MsgId


# ----------------------------------------------------------------- client → server


class Join(_ClientMsg):
    """Enter a room: staff by their signed-in cookie, guests with a join token.

    `{"type": "join", "id": "1", "room_id": "r-7Hq2", "token": "eyJhbGciOi..."}`
    """

    type: Literal["join"] = "join"
    room_id: RoomId
    token: Annotated[str, Field(max_length=4096)] | None = None
    role: Role | None = None


class Resume(_ClientMsg):
    """Take back one's place after a dropped connection (same or another node).

    `{"type": "resume", "id": "1", "resume_token": "eyJhbGciOi..."}`
    """

    type: Literal["resume"] = "resume"
    resume_token: Annotated[str, Field(min_length=1, max_length=4096)]


class Leave(_ClientMsg):
    """`{"type": "leave", "id": "9"}`"""

    type: Literal["leave"] = "leave"


class Ping(_ClientMsg):
    """`{"type": "ping", "id": "5"}`"""

    type: Literal["ping"] = "ping"


class Offer(_ClientMsg):
    """The browser's offer for its connection to the media server.

    `{"type": "offer", "id": "2", "sdp": "v=0..."}`
    """

    type: Literal["offer"] = "offer"
    sdp: Sdp


class Answer(_ClientMsg):
    """The browser's answer to a server `offer` (renegotiation).

    `{"type": "answer", "id": "3", "sdp": "v=0..."}`
    """

    type: Literal["answer"] = "answer"
    sdp: Sdp


class Candidate(_ClientMsg):
    """A trickled ICE candidate; `candidate: null` ends gathering.

    `{"type": "candidate", "id": "4", "candidate": "candidate:1 1 udp ...", "sdp_mid": "0",
    "sdp_mline_index": 0}`
    """

    type: Literal["candidate"] = "candidate"
    candidate: Annotated[str, Field(max_length=1024)] | None
    sdp_mid: Annotated[str, Field(max_length=64)] | None = None
    sdp_mline_index: Annotated[int, Field(ge=0, le=64)] | None = None


class SendChat(_ClientMsg):
    """`{"type": "chat", "id": "6", "text": "您好"}`"""

    type: Literal["chat"] = "chat"
    text: Annotated[str, Field(min_length=1, max_length=2000, pattern=NO_CONTROL)]


class SetPresence(_ClientMsg):
    """Own mute state and measured connection quality; `sending: false` when the client sends
    no media on purpose (no microphone and no camera, or none on), so the media server's
    silence from it is not shown as a lost link.

    `{"type": "presence", "id": "7", "muted_audio": false, "quality": "good"}`
    """

    type: Literal["presence"] = "presence"
    muted_audio: bool | None = None
    muted_video: bool | None = None
    quality: Quality | None = None
    sending: bool | None = None


class ReceiveVideo(_ClientMsg):
    """Audio only (`enabled: false`): the server stops forwarding any video to this participant
    (its audio, and what it publishes, go on); `true` resumes it, from a keyframe.

    `{"type": "receive_video", "id": "9", "enabled": false}`
    """

    type: Literal["receive_video"] = "receive_video"
    enabled: bool


class Admit(_ClientMsg):
    """`{"type": "admit", "id": "8", "peer_id": "p-3"}`"""

    type: Literal["admit"] = "admit"
    peer_id: PeerId


class Deny(_ClientMsg):
    """`{"type": "deny", "id": "8", "peer_id": "p-3", "reason": "wrong room"}`"""

    type: Literal["deny"] = "deny"
    peer_id: PeerId
    reason: Annotated[str, Field(max_length=200, pattern=NO_CONTROL)] = ""


class Remove(_ClientMsg):
    """`{"type": "remove", "id": "10", "peer_id": "p-3"}`"""

    type: Literal["remove"] = "remove"
    peer_id: PeerId
    reason: Annotated[str, Field(max_length=200, pattern=NO_CONTROL)] = ""


class Lock(_ClientMsg):
    """`{"type": "lock", "id": "11", "locked": true}`"""

    type: Literal["lock"] = "lock"
    locked: bool


class AskUnmute(_ClientMsg):
    """Ask a participant to unmute (they decide).

    `{"type": "ask_unmute", "id": "12", "peer_id": "p-3", "kind": "audio"}`
    """

    type: Literal["ask_unmute"] = "ask_unmute"
    peer_id: PeerId
    kind: TrackKind


class ForceMute(_ClientMsg):
    """Stop (or resume, `muted: false`) forwarding a participant's audio or video.

    `{"type": "force_mute", "id": "13", "peer_id": "p-3", "kind": "audio", "muted": true}`
    """

    type: Literal["force_mute"] = "force_mute"
    peer_id: PeerId
    kind: TrackKind
    muted: bool = True


class EndSession(_ClientMsg):
    """`{"type": "end_session", "id": "14"}`"""

    type: Literal["end_session"] = "end_session"


class RecordingConsent(_ClientMsg):
    """`{"type": "recording_consent", "id": "15", "consent": true}`"""

    type: Literal["recording_consent"] = "recording_consent"
    consent: bool


class RequestConsent(_ClientMsg):
    """A host asks everybody present for recording consent.

    `{"type": "request_consent", "id": "16"}`
    """

    type: Literal["request_consent"] = "request_consent"


class StartRecording(_ClientMsg):
    """`{"type": "recording_start", "id": "17"}`"""

    type: Literal["recording_start"] = "recording_start"


class StopRecording(_ClientMsg):
    """`{"type": "recording_stop", "id": "18"}`"""

    type: Literal["recording_stop"] = "recording_stop"


ClientMessage = Annotated[
    Join
    | Resume
    | Leave
    | Ping
    | Offer
    | Answer
    | Candidate
    | SendChat
    | SetPresence
    | ReceiveVideo
    | Admit
    | Deny
    | Remove
    | Lock
    | AskUnmute
    | ForceMute
    | EndSession
    | RecordingConsent
    | RequestConsent
    | StartRecording
    | StopRecording,
    Field(discriminator="type"),
]
client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
parse_client_message = client_adapter.validate_json


# ----------------------------------------------------------------- shared values


class IceServerInfo(_Msg):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class ParticipantInfo(_Msg):
    peer_id: str
    display_name: str
    role: Role
    is_staff: bool
    site_id: int | None = None
    site_name: str = ""
    muted_audio: bool = False
    muted_video: bool = False
    forced_audio: bool = False
    forced_video: bool = False
    speaking: bool = False
    quality: Quality = "unknown"
    #: What the server receives from this participant (loss upstream of the server not
    #: recovered, or `lost` after 1.5 s without packets), measured by the media server;
    #: `unknown` until it has published media. Tiles show the worse of this and `quality`.
    upstream: Quality = "unknown"
    connected: bool = True


class LobbyEntry(_Msg):
    peer_id: str
    display_name: str
    role: Role
    site_id: int | None = None
    site_name: str = ""
    waiting_since: datetime
    #: True: was in the room and waits for an official to return.
    paused: bool = False
    recording_consent: bool | None = None


class RoomInfo(_Msg):
    room_id: str
    kind: Literal["reception", "mediation"]
    title: str = ""
    capacity: int
    locked: bool = False
    recording: bool = False
    recording_allowed: bool = True
    paused: bool = False


# ----------------------------------------------------------------- server → client


class Hello(_Msg):
    """Sent once when the socket opens.

    `{"type": "hello", "protocol": "onedoor.v1", "node_id": "n1", "heartbeat_s": 20,
    "max_message_bytes": 65536, "grace_s": 30}`
    """

    type: Literal["hello"] = "hello"
    protocol: str = PROTOCOL
    node_id: str
    heartbeat_s: float
    max_message_bytes: int
    grace_s: float


class Ack(_Msg):
    """`{"type": "ack", "re": "6"}`"""

    type: Literal["ack"] = "ack"
    re: str


class Error(_Msg):
    """`{"type": "error", "re": "8", "code": "room_full", "message": "the room is full",
    "message_zh": "房间已满"}`"""

    type: Literal["error"] = "error"
    re: str | None = None
    code: str
    message: str
    message_zh: str
    field: str | None = None


class Welcome(_Msg):
    """Answer to join/resume: where you are, how to reach the media server, how to resume."""

    type: Literal["welcome"] = "welcome"
    peer_id: str
    status: ParticipantStatus
    role: Role
    permissions: list[Permission]
    room: RoomInfo
    ice_servers: list[IceServerInfo]
    resume_token: str
    participants: list[ParticipantInfo] = Field(default_factory=list)
    lobby: list[LobbyEntry] = Field(default_factory=list)
    resumed: bool = False
    #: The media connection is gone (new owner node): send a fresh offer.
    media_reset: bool = False


class Admitted(_Msg):
    """`{"type": "admitted", "participants": [...]}`: you left the lobby for the room."""

    type: Literal["admitted"] = "admitted"
    participants: list[ParticipantInfo]
    #: A fresh resume token (the old one would resume into the lobby).
    resume_token: str = ""


class Denied(_Msg):
    """`{"type": "denied", "reason": "wrong room"}`; the socket closes with 4403."""

    type: Literal["denied"] = "denied"
    reason: str = ""


class Paused(_Msg):
    """No official is present: you are back in the lobby until one returns."""

    type: Literal["paused"] = "paused"
    reason: str = "no_official"


class Removed(_Msg):
    """`{"type": "removed", "reason": "..."}`; the socket closes with 4404."""

    type: Literal["removed"] = "removed"
    reason: str = ""


class SessionEnded(_Msg):
    """`{"type": "session_ended", "by": "p-1"}`; the socket closes with 4410."""

    type: Literal["session_ended"] = "session_ended"
    by: str | None = None


class ParticipantJoined(_Msg):
    type: Literal["participant_joined"] = "participant_joined"
    participant: ParticipantInfo


class ParticipantLeft(_Msg):
    """`{"type": "participant_left", "peer_id": "p-3", "reason": "left"}`"""

    type: Literal["participant_left"] = "participant_left"
    peer_id: str
    reason: Literal["left", "removed", "timeout", "paused", "ended"] = "left"


class ParticipantUpdate(_Msg):
    """Presence: speaking, muted, quality, connected (in its grace period when false)."""

    type: Literal["participant_update"] = "participant_update"
    participant: ParticipantInfo


class LobbyUpdate(_Msg):
    """To hosts: who waits, from which site."""

    type: Literal["lobby_update"] = "lobby_update"
    waiting: list[LobbyEntry]


class RoomUpdate(_Msg):
    type: Literal["room_update"] = "room_update"
    room: RoomInfo


class ChatOut(_Msg):
    """`{"type": "chat_message", "from_peer": "p-1", "display_name": "王调解员",
    "text": "您好", "at": "2026-11-24T08:00:00Z"}`"""

    type: Literal["chat_message"] = "chat_message"
    from_peer: str
    display_name: str
    text: str
    at: datetime


class ServerOffer(_Msg):
    """The media server renegotiates (tracks added or removed); answer with `answer`."""

    type: Literal["offer"] = "offer"
    sdp: str


class ServerAnswer(_Msg):
    type: Literal["answer"] = "answer"
    re: str
    sdp: str


class UnmuteRequest(_Msg):
    type: Literal["unmute_request"] = "unmute_request"
    kind: TrackKind
    by: str


class ForcedMute(_Msg):
    type: Literal["forced_mute"] = "forced_mute"
    kind: TrackKind
    muted: bool
    by: str


class VideoPausedOut(_Msg):
    """To one participant: its link cannot carry the video of these senders, so the server
    paused it (their audio goes on). Show "视频已暂停（网络较差）" on their tiles until
    `video_resumed` names them."""

    type: Literal["video_paused"] = "video_paused"
    peers: list[PeerId]


class TrackPublishedOut(_Msg):
    """To one participant, before the server's `offer` that brings it: a track you will
    receive, by its id (`MediaStreamTrack.id`), whose it is and what it carries
    (`source`: the sender's microphone, camera or shared screen)."""

    type: Literal["track_published"] = "track_published"
    track_id: str = Field(max_length=80)
    peer_id: PeerId
    kind: TrackKind
    source: Literal["microphone", "camera", "screen"]


class TrackUnpublishedOut(_Msg):
    """To one participant: a track you received has ended (its sender stopped it or left)."""

    type: Literal["track_unpublished"] = "track_unpublished"
    track_id: str = Field(max_length=80)
    peer_id: PeerId


class VideoResumedOut(_Msg):
    """To one participant: the video of these senders is forwarded again (a keyframe follows)."""

    type: Literal["video_resumed"] = "video_resumed"
    peers: list[PeerId]


class PublishLimitOut(_Msg):
    """To one participant: send your camera at no more than `max_kbps` kbit/s (`null`: no
    limit beyond your own), because someone receiving it has a link too weak for more
    (`RTCRtpSender.setParameters`, `encodings[0].maxBitrate`). The server forwards what you
    send either way; honouring it lets that participant see every frame."""

    type: Literal["publish_limit"] = "publish_limit"
    max_kbps: int | None


class ConsentRequest(_Msg):
    """Please answer with `recording_consent` (consent or refusal)."""

    type: Literal["consent_request"] = "consent_request"
    by: str


class ConsentState(_Msg):
    """To hosts: who consented, who refused, who has not answered."""

    type: Literal["consent_state"] = "consent_state"
    consented: list[str]
    refused: list[str]
    pending: list[str]
    #: Someone refused: recording is not allowed, take written minutes (笔录).
    minutes_required: bool = False


class RecordingState(_Msg):
    """Drives the recording indicator on every client."""

    type: Literal["recording_state"] = "recording_state"
    active: bool
    by: str | None = None
    reason: str = ""


class Pong(_Msg):
    type: Literal["pong"] = "pong"
    re: str


ServerMessage = Annotated[
    Hello
    | Ack
    | Error
    | Welcome
    | Admitted
    | Denied
    | Paused
    | Removed
    | SessionEnded
    | ParticipantJoined
    | ParticipantLeft
    | ParticipantUpdate
    | LobbyUpdate
    | RoomUpdate
    | ChatOut
    | ServerOffer
    | ServerAnswer
    | UnmuteRequest
    | ForcedMute
    | VideoPausedOut
    | VideoResumedOut
    | PublishLimitOut
    | TrackPublishedOut
    | TrackUnpublishedOut
    | ConsentRequest
    | ConsentState
    | RecordingState
    | Pong,
    Field(discriminator="type"),
]
server_adapter: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


def error_message(exc: AppError, re: str | None) -> Error:
    """The `error` message a client gets for `exc` (in answer to its message `re`)."""
    fields = exc.details.get("field") if exc.details else None
    return Error(
        re=re,
        code=exc.code,
        message=str(exc),
        message_zh=exc.message_zh,
        field=str(fields) if fields else None,
    )


def encode(message: _Msg) -> str:
    """One JSON text frame (UTF-8, compact); done once per broadcast, not per recipient."""
    return message.model_dump_json(exclude_none=False)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of both directions, as published in docs/signaling.schema.json.

    Usable as it stands: every definition sits in the root `$defs`, so each `$ref` resolves;
    `#/$defs/ClientMessage` and `#/$defs/ServerMessage` are each a `oneOf` over that
    direction's messages (discriminated by `type`); the root accepts a message of either
    direction; an error's `code` is an enum of the documented codes."""
    defs: dict[str, Any] = {}
    directions: dict[str, Any] = {}
    for name, adapter in (("ClientMessage", client_adapter), ("ServerMessage", server_adapter)):
        schema = adapter.json_schema()
        for key, value in schema.pop("$defs", {}).items():
            if defs.setdefault(key, value) != value:
                raise ValueError(f"two different message schemas are both named {key}")
        directions[name] = schema
        for ref in schema["discriminator"]["mapping"].values():
            message = defs[ref.rsplit("/", 1)[1]]
            # `type` has a default in the models, but every frame on the wire carries it.
            message["required"] = sorted({"type", *message.get("required", [])})
    defs.update(directions)
    defs["Error"]["properties"]["code"]["enum"] = list(ERROR_CODES)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": PROTOCOL,
        "$defs": defs,
        "anyOf": [{"$ref": "#/$defs/ClientMessage"}, {"$ref": "#/$defs/ServerMessage"}],
    }


def message_types(adapter: TypeAdapter[Any]) -> list[str]:
    schema = adapter.json_schema()
    return sorted(schema["discriminator"]["mapping"])


if __name__ == "__main__":  # python -m signaling.protocol > docs/signaling.schema.json
    print(json.dumps(json_schema(), indent=2, ensure_ascii=False))
