"""Audio first, per subscriber (issue #18): the SFU's room loop calls `evaluate` every
`BandwidthSettings.interval_s`. For each subscriber it measures what it is sent (each
publisher's forwarded bitrate, `TrackForwarder.rate`), asks its `VideoPausePolicy` with its
`BandwidthEstimator` (fed by the adapter from the subscriber's REMB and receiver reports), and
pauses or resumes that subscriber's video subscriptions; audio is never touched. No aiortc.

Also applied here: a participant's own choice to receive no video (`receive_video`, the room's
"仅音频" switch), through the same `ForwardedTrack.set_paused`.
"""

from __future__ import annotations

import logging

from media.bandwidth import BandwidthSettings
from media.forwarding import ForwardedTrack, PeerSession, Room
from media.interfaces import VideoPaused

logger = logging.getLogger(__name__)


def needed_bps(session: PeerSession, settings: BandwidthSettings) -> float:
    """What the subscriber is sent when its video flows: the video it receives plus audio."""
    total = 0.0
    for _, track in session.subscriptions.values():
        forwarder = track.forwarder
        if not (forwarder.granted and forwarder.enabled) or forwarder.ended:
            continue
        rate = forwarder.rate.bps
        if track.kind == "audio":
            total += rate if rate else settings.audio_bps
        else:
            total += rate or 0.0
    return total


def video_tracks(session: PeerSession) -> list[ForwardedTrack]:
    return [t for _, t in session.subscriptions.values() if t.kind == "video"]


def apply_pause(session: PeerSession) -> None:
    """Make the subscriber's video subscriptions match its policy and its own choice."""
    paused = session.policy.paused or not session.receive_video
    for track in video_tracks(session):
        track.set_paused(paused)


def evaluate(room: Room, settings: BandwidthSettings, now: float) -> list[VideoPaused]:
    """One round for every subscriber of the room; the events to tell subscribers."""
    for forwarder in room.forwarders():
        forwarder.rate.update(forwarder.bytes_in, now)
    events: list[VideoPaused] = []
    for session in list(room.peers.values()):
        if session.closed or not session.connected:
            continue
        tracks = video_tracks(session)
        if tracks:
            decision = session.policy.update(session.estimator, needed_bps(session, settings))
            if decision is not None:
                logger.info(
                    "room %s: %s video to %s (%s)",
                    room.room_id,
                    "pausing" if decision else "resuming",
                    session.peer_id,
                    session.policy.reason or "estimate recovered",
                )
        apply_pause(session)
        # tell the subscriber which senders' video is paused for its network, as it changes
        now_paused = {t.forwarder.publisher_id for t in tracks} if session.policy.paused else set()
        reported = session.reported_paused
        if now_paused - reported:
            events.append(
                VideoPaused(
                    room.room_id, session.peer_id, tuple(sorted(now_paused - reported)), True
                )
            )
        if reported - now_paused:
            events.append(
                VideoPaused(
                    room.room_id, session.peer_id, tuple(sorted(reported - now_paused)), False
                )
            )
        session.reported_paused = now_paused
        session.quality.sample(
            interval_s=settings.interval_s,
            estimate_bps=session.estimator.estimate_bps(),
            loss=session.estimator.loss(None),
            paused=bool(tracks) and session.policy.paused,
        )
    return events
