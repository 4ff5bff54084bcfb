"""Audio first, per subscriber (issue #18): the SFU's room loop calls `evaluate` every
`BandwidthSettings.interval_s`. For each subscriber it measures what it is sent (each
publisher's forwarded bitrate, `TrackForwarder.rate`), asks its `VideoPausePolicy` with its
`BandwidthEstimator` (fed by the adapter from the subscriber's REMB and receiver reports), and
pauses or resumes that subscriber's video subscriptions; audio is never touched. No aiortc.

Before any pause, VP8 temporal layers: each subscriber's `LayerPolicy` caps the temporal layer
it receives (from every publisher's measured bitrate per layer); only at the base layer does
the `VideoPausePolicy` get its turn (layer-drop → pause → resume → layer-up).

Also applied here: a participant's own choice to receive no video (`receive_video`, the room's
"仅音频" switch), through the same `ForwardedTrack.set_paused`.
"""

from __future__ import annotations

import logging

from media.bandwidth import MAX_LAYER, BandwidthSettings
from media.forwarding import ForwardedTrack, PeerSession, Room
from media.interfaces import VideoPaused

logger = logging.getLogger(__name__)


def needed_bps(session: PeerSession, settings: BandwidthSettings, layer: int = MAX_LAYER) -> float:
    """What the subscriber is sent when its video flows with temporal layers 0..`layer`: that
    video plus audio."""
    total = 0.0
    for _, track in session.subscriptions.values():
        forwarder = track.forwarder
        if not (forwarder.granted and forwarder.enabled) or forwarder.ended:
            continue
        if track.kind == "audio":
            rate = forwarder.rate.bps
            total += rate if rate else settings.audio_bps
        else:
            total += forwarder.rate_up_to(layer) or 0.0
    return total


def top_layer(session: PeerSession) -> int:
    """The highest temporal layer any publisher this subscriber receives sends (0: none)."""
    return max(
        (t.forwarder.top_layer for t in video_tracks(session) if not t.forwarder.ended),
        default=0,
    )


def _choose_layer(
    session: PeerSession, settings: BandwidthSettings, now: float, load_cap: int = MAX_LAYER
) -> bool:
    """Layer-drop before pause, layer-up after resume. Returns whether the pause policy has its
    turn (the subscriber is at the base layer, or its publishers send no temporal layers).
    `load_cap`: the worker's own cap (media.load.LoadShedder), below the subscriber's when the
    worker is saturated; it does not move the subscriber's policy."""
    tracks = video_tracks(session)
    layers = session.layers
    at_base = True
    if session.policy.paused or not session.receive_video:
        layers.to_base()
    else:
        top = top_layer(session)
        needed = [needed_bps(session, settings, lay) for lay in range(top + 1)]
        change = layers.update(session.estimator, needed)
        if change is not None:
            logger.info(
                "room %s: temporal layers up to %d for %s (needs %s bps)",
                session.room.room_id,
                change,
                session.peer_id,
                [round(n) for n in needed],
            )
        at_base = layers.effective(top) == 0
    for track in tracks:
        track.set_max_layer(min(layers.layer, load_cap), now)
        track.check_layer_sync(now)
    return session.policy.paused or not session.receive_video or at_base


def video_tracks(session: PeerSession) -> list[ForwardedTrack]:
    return [t for _, t in session.subscriptions.values() if t.kind == "video"]


def apply_pause(session: PeerSession) -> None:
    """Make the subscriber's video subscriptions match its policy and its own choice."""
    paused = session.policy.paused or not session.receive_video
    for track in video_tracks(session):
        track.set_paused(paused)


def evaluate(
    room: Room, settings: BandwidthSettings, now: float, load_cap: int = MAX_LAYER
) -> list[VideoPaused]:
    """One round for every subscriber of the room; the events to tell subscribers.
    `load_cap`: the highest temporal layer the worker forwards while saturated."""
    for forwarder in room.forwarders():
        forwarder.update_rates(now)
    events: list[VideoPaused] = []
    for session in list(room.peers.values()):
        if session.closed or not session.connected:
            continue
        tracks = video_tracks(session)
        if tracks and _choose_layer(session, settings, now, load_cap):
            # only the base layer is left: pause when even it does not fit
            decision = session.policy.update(session.estimator, needed_bps(session, settings, 0))
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
