"""Errors the media plane raises; signaling maps `code` onto its own typed errors."""

from __future__ import annotations

from typing import ClassVar


class MediaFailure(Exception):
    code: ClassVar[str] = "media_error"


class PeerNotFound(MediaFailure):
    code = "media_peer_not_found"


class InvalidDescription(MediaFailure):
    """Malformed SDP, an answer with no pending offer, or no supported codec."""

    code = "media_invalid_sdp"


class NegotiationConflict(InvalidDescription):
    """An offer arrived while the server's own offer awaits an answer (glare): answer that
    first, then offer again."""

    code = "negotiation_conflict"


class NegotiationTimeout(MediaFailure):
    code = "media_timeout"


class RecordingError(MediaFailure):
    code = "media_recording_error"


class MediaSaturated(MediaFailure):
    """This media worker is saturated (its event loop lags, `media.load`): it takes no new
    room; the rooms it already carries go on. Try again later."""

    code = "media_saturated"
    message_zh: ClassVar[str] = "音视频服务繁忙，请稍后再试"
