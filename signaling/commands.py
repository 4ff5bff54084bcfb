"""Which `Room` operation each room-level client message asks for: chat, presence, moderation
and recording. Pure (no I/O): the owner (`owner.RoomActor`) acknowledges the message and carries
out the `Effects`. Leave and negotiation (offer, answer, candidate) are the owner's own."""

from __future__ import annotations

from datetime import datetime

from signaling import errors
from signaling.protocol import (
    Admit,
    AskUnmute,
    ClientMessage,
    Deny,
    EndSession,
    ForceMute,
    Lock,
    RecordingConsent,
    Remove,
    RequestConsent,
    SendChat,
    SetPresence,
    StartRecording,
    StopRecording,
)
from signaling.room import Room
from signaling.roomstate import Effects


def room_operation(room: Room, peer: str, msg: ClientMessage, now: datetime) -> Effects:
    """Run the operation `msg` from participant `peer` asks for.

    Raises:
        SignalingError: the room refused it (permissions, state), or `msg` is not a room
            operation (`invalid_state`).
    """
    if isinstance(msg, SendChat):
        return room.chat(peer, msg.text, now)
    if isinstance(msg, SetPresence):
        return room.presence(
            peer,
            muted_audio=msg.muted_audio,
            muted_video=msg.muted_video,
            quality=msg.quality,
            sending=msg.sending,
        )
    if isinstance(msg, Admit):
        return room.admit(peer, msg.peer_id, now)
    if isinstance(msg, Deny):
        return room.deny(peer, msg.peer_id, msg.reason, now)
    if isinstance(msg, Remove):
        return room.remove(peer, msg.peer_id, msg.reason, now)
    if isinstance(msg, Lock):
        return room.lock(peer, msg.locked, now)
    if isinstance(msg, AskUnmute):
        return room.ask_unmute(peer, msg.peer_id, msg.kind)
    if isinstance(msg, ForceMute):
        return room.force_mute(peer, msg.peer_id, msg.kind, msg.muted, now)
    if isinstance(msg, EndSession):
        return room.end(peer, now)
    if isinstance(msg, RecordingConsent):
        return room.consent(peer, msg.consent, now)
    if isinstance(msg, RequestConsent):
        return room.request_consent(peer)
    if isinstance(msg, StartRecording):
        return room.start_recording(peer, now)
    if isinstance(msg, StopRecording):
        return room.stop_recording(peer, now)
    raise errors.InvalidState(f"{msg.type} is not valid now")
