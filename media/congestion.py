"""Audio first, per subscriber (issue #18): the SFU's room loop calls `evaluate` every
`BandwidthSettings.interval_s`. For each subscriber it measures what it is sent (each
publisher's forwarded bitrate, `TrackForwarder.rate`), asks its `VideoPausePolicy` with its
`BandwidthEstimator` (fed by the adapter from the subscriber's REMB and receiver reports), and
pauses or resumes that subscriber's video subscriptions; audio is never touched. No aiortc.

Before any pause, VP8 temporal layers: each subscriber's `LayerPolicy` caps the temporal layer
it receives (from every publisher's measured bitrate per layer); only at the base layer does
the `VideoPausePolicy` get its turn (layer-drop → pause → resume → layer-up).

Beside both, each publisher's camera is capped to what its weakest subscriber can take at full
frame rate (`publish_caps`, `PublishCapPolicy`): the publisher's own encoder lowers its
bitrate, so that subscriber gets every frame instead of the base layer's few. A subscriber
whose base layers fit only with its cameras at the floor has them capped there before its video
may pause (`_caps_before_pause`): layer-drop → cap → pause.

And for audio, how many earlier frames each packet to a subscriber repeats (RED, RFC 2198;
`AudioRedundancy`, from the loss the subscriber reports on its audio): a lost packet is
filled from the next one, which Opus in-band FEC through the SFU cannot do.

Also applied here: a participant's own choice to receive no video (`receive_video`, the room's
"仅音频" switch), through the same `ForwardedTrack.set_paused`.
"""

from __future__ import annotations

import logging

from media.bandwidth import MAX_LAYER, BandwidthSettings, congestion_loss, credible, overrun
from media.forwarding import ForwardedTrack, PeerSession, Room, TrackForwarder
from media.interfaces import PublishLimit, VideoPaused

logger = logging.getLogger(__name__)


def _live(track: ForwardedTrack) -> bool:
    forwarder = track.forwarder
    return forwarder.granted and forwarder.enabled and not forwarder.ended


def audio_bps(session: PeerSession, settings: BandwidthSettings) -> float:
    """The audio the subscriber is sent (`audio_bps` for a stream not measured yet), with the
    frames its RED packets repeat."""
    return sum(
        (t.forwarder.rate.bps or settings.audio_bps) * (1 + t.redundancy)
        for _, t in session.subscriptions.values()
        if t.kind == "audio" and _live(t)
    )


def needed_bps(session: PeerSession, settings: BandwidthSettings, layer: int = MAX_LAYER) -> float:
    """What the subscriber is sent when its video flows with temporal layers 0..`layer`: that
    video plus audio."""
    video = sum(t.forwarder.rate_up_to(layer) or 0.0 for t in video_tracks(session) if _live(t))
    return audio_bps(session, settings) + video


def top_layer(session: PeerSession) -> int:
    """The highest temporal layer any publisher this subscriber receives sends (0: none)."""
    return max(
        (t.forwarder.top_layer for t in video_tracks(session) if not t.forwarder.ended),
        default=0,
    )


def _share(session: PeerSession, settings: BandwidthSettings, estimate: int | None) -> float | None:
    """Bits per second the subscriber's `estimate` leaves each video it receives: `estimate ×
    cap_headroom` less its audio, divided by its live videos (None without either)."""
    videos = sum(1 for t in video_tracks(session) if _live(t))
    if estimate is None or not videos:
        return None
    return (estimate * settings.cap_headroom - audio_bps(session, settings)) / videos


def _layer_floor(session: PeerSession, settings: BandwidthSettings) -> int:
    """1 when the subscriber's `_share` is at least `cap_floor_bps`: its publishers' caps
    (`publish_caps`) will fit it at every frame within seconds, so a low estimate takes it to
    layer 1 (7.5 fps) to wait, not to the base layer. At 3.75 fps a step down from 15 counts
    in Chromium as a run of freezes (a frame later than 3 × the recent interval): 4-7 s
    "frozen" per start on "4G weak" with the longest gap 1-3 s."""
    if not settings.cap_publishers:
        return 0
    share = _share(session, settings, session.estimator.estimate_bps())
    return 1 if share is not None and share >= settings.cap_floor_bps else 0


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
        change = layers.update(session.estimator, needed, _layer_floor(session, settings))
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


def _pause_needed(session: PeerSession, settings: BandwidthSettings) -> float:
    """What the pause policy weighs the estimate against: the base layers plus audio, unless
    the subscriber can take `cap_floor_bps` a video: then its publishers are capped to fit it
    (`publish_caps`) and its video pauses only for loss (which is also what a publisher that
    ignores its cap causes)."""
    needed = needed_bps(session, settings, 0)
    share = session.cap_share
    if settings.cap_publishers and share is not None and share >= settings.cap_floor_bps:
        videos = sum(1 for t in video_tracks(session) if _live(t))
        needed = min(needed, audio_bps(session, settings) + share * videos)
    return needed


def _settling(session: PeerSession, settings: BandwidthSettings, now: float) -> bool:
    """Whether what the subscriber is sent changed within `settle_s`: its layer, or the cap of
    a publisher it receives."""
    if now - session.layers.changed_at < settings.settle_s:
        return True
    for track in video_tracks(session):
        publisher = session.room.peers.get(track.forwarder.publisher_id)
        changed_at = publisher.publish_cap.changed_at if publisher is not None else None
        if changed_at is not None and now - changed_at < settings.settle_s:
            return True
    return False


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
            # only the base layer is left: pause when even it does not fit, and not while
            # the cameras are on their way down to the floor where it would
            capping = _caps_before_pause(session, settings) and _cap_pending(session, settings)
            decision = session.policy.update(
                session.estimator,
                _pause_needed(session, settings),
                settling=capping or _settling(session, settings, now),
            )
            if decision is not None:
                logger.info(
                    "room %s: %s video to %s (%s)",
                    room.room_id,
                    "pausing" if decision else "resuming",
                    session.peer_id,
                    session.policy.reason or "a probe: the pause is over and the loss is low",
                )
        apply_pause(session)
        session.redundancy.update(session.estimator.loss("audio"), settings, now)
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
        # the record's grade believes the same estimates the policies act on (`credible`)
        believed = credible(settings, session.estimator)
        session.quality.sample(
            interval_s=settings.interval_s,
            estimate_bps=session.estimator.estimate_bps() if believed else None,
            loss=session.estimator.loss(None),
            paused=bool(tracks) and session.policy.paused,
        )
    return events


def update_video_share(session: PeerSession, settings: BandwidthSettings, now: float) -> None:
    """`session.cap_share`: bits per second the subscriber can take for each video it receives
    (`_share`).

    A receiver's estimate follows what it receives (Chromium's stays below 1.5 × that), so it
    says where the link ends only while it is below what the subscriber would be sent with every
    layer (`pause_below_ratio` × that, the layer policy's "low") and below 1.2 × what it
    receives now (not at that ceiling: a subscriber held at a low layer reads low), and has
    settled, or while the loss it reports is congestion (`bandwidth.congestion_loss`): only
    then may the share fall, and only if the estimate is `bandwidth.credible` (a round trip
    below `credible_rtt_s` has no queue: its loss counts as if no estimate had come). A higher
    share is always taken (caps are lifted as a capped receiver's estimate grows); while its
    video is paused the share is kept. None until known, and for a participant that chose audio
    only. When its estimate and round trip both say its link is overrun (`bandwidth.overrun`,
    against what it would be sent with every layer), the share falls whether or not the estimate
    has settled, in the warm-up too: Chromium's estimate keeps climbing 1-2 % a second after the
    decrease an overrun makes, and the caps then came 4-21 s after the start on "4G weak" (now
    2 s after the first layer drop)."""
    if not session.receive_video:
        session.cap_share = None
        return
    every_layer = needed_bps(session, settings)
    overran = overrun(settings, session.estimator, every_layer)
    warm = now - session.policy.created_at >= settings.warmup_s
    if session.policy.paused or not (warm or overran):
        return
    estimate = session.estimator.estimate_bps()
    share = _share(session, settings, estimate)
    if share is None or estimate is None:
        return
    known = session.cap_share
    # below what every layer takes, and not merely at its ceiling of 1.5 × what it receives
    receiving = needed_bps(session, settings, session.layers.effective(top_layer(session)))
    believed = credible(settings, session.estimator)
    low = overran or (
        believed
        and estimate < settings.pause_below_ratio * every_layer
        and estimate < 1.2 * receiving
        and session.estimator.settled()
    )
    congested = congestion_loss(
        settings,
        session.estimator.loss("video"),
        estimate if believed else None,
        receiving,
        session.estimator.rising(),
        session.estimator.rtt_s,
    )
    if low or congested or (known is not None and share > known):
        session.cap_share = share


def _waits_below_top(session: PeerSession, settings: BandwidthSettings, now: float) -> bool:
    """Whether the subscriber has received fewer temporal layers than its publishers send for
    longer than a probe up takes (`LayerPolicy` `hold_s` + `up_after_s`), with its video flowing
    and its estimate `credible`: no probe came because its estimate sits below
    `resume_above_ratio` × what the next layer takes, and no cap because its share is below
    `cap_floor_bps` (a share at the floor needs an estimate above 1.2 × what it receives, where
    `low` stops).

    Seen at the base layer once in the last five full "4G weak" runs (C's estimate settled below
    350 kbit/s, and it received 5 fps for the rest of the minute), and at layer 1 in 1 of 5
    alternated 30 s runs (19.5 s at 7.5 fps while its estimate crept up). Capped at the floor,
    a lower layer's few frames become every frame at the floor's bitrate, and its layers climb."""
    layers = session.layers
    top = top_layer(session)
    return (
        session.receive_video
        and not session.policy.paused
        and layers.effective(top) < top
        and now - layers.changed_at >= layers.hold_s + layers.layers.up_after_s
        and credible(settings, session.estimator)
    )


def _floor_base_fits(session: PeerSession, settings: BandwidthSettings, estimate: int) -> bool:
    """Whether the subscriber's base layers, with every camera it receives capped at
    `cap_floor_bps`, and its audio fit `estimate` × `cap_headroom` (as `_share` takes it). A
    camera's base layer keeps its part of the whole stream under the cap; other video keeps its
    rate."""
    video = 0.0
    for track in video_tracks(session):
        if not _live(track):
            continue
        forwarder = track.forwarder
        whole, base = forwarder.rate_up_to(MAX_LAYER), forwarder.rate_up_to(0)
        if not whole or base is None:
            return False
        video += settings.cap_floor_bps * min(1.0, base / whole) if _capped(forwarder) else base
    return estimate * settings.cap_headroom >= audio_bps(session, settings) + video


def _capped(forwarder: TrackForwarder) -> bool:
    """Whether `publish_caps` caps this publisher's stream (cameras only)."""
    return forwarder.kind == "video" and forwarder.source == "camera"


def _caps_before_pause(session: PeerSession, settings: BandwidthSettings) -> bool:
    """Whether the subscriber, at the base layer with its video flowing and its share known,
    has a `credible` estimate too low for its base layers as they are sent, but enough for them
    with its cameras at `cap_floor_bps`: then those cameras are held at the floor
    (`publish_caps`) and its pause waits for them (`evaluate`). The order is layer-drop → cap
    → pause.

    Seen in 2 of 6 traced 25 s runs of "4G weak": C's estimate grew 1 kbit/s a round from
    200 kbit/s (Chromium's additive increase) while A's and B's cameras climbed to 380 kbit/s.
    Its share (48 kbit/s a video) was below the floor, so nobody was capped, and its video
    paused for 5 s: it received 4 fps over the run, where the base layers at the floor with
    audio (180 kbit/s) fitted 0.8 × its 245 kbit/s."""
    if not session.receive_video or session.policy.paused or session.cap_share is None:
        return False
    if session.layers.effective(top_layer(session)) != 0:
        return False
    estimate = session.estimator.estimate_bps()
    if estimate is None or not credible(settings, session.estimator):
        return False
    return estimate < settings.pause_below_ratio * needed_bps(
        session, settings, 0
    ) and _floor_base_fits(session, settings, estimate)


def _cap_pending(session: PeerSession, settings: BandwidthSettings) -> bool:
    """Whether a connected camera the subscriber receives is still capped above the floor
    (more than the step `PublishCapPolicy` lowers a cap by)."""
    for track in video_tracks(session):
        forwarder = track.forwarder
        publisher = session.room.peers.get(forwarder.publisher_id)
        if not _live(track) or not _capped(forwarder) or publisher is None:
            continue
        if publisher.closed or not publisher.connected:
            continue
        if publisher.publish_cap.lowers_to(settings.cap_floor_bps):
            return True
    return False


def publish_caps(room: Room, settings: BandwidthSettings, now: float) -> list[PublishLimit]:
    """Each camera publisher's cap (`PublishCapPolicy`) from the lowest `cap_share` among its
    subscribers that is at least `cap_floor_bps`; events where a cap changed.

    A subscriber whose share falls below the floor after it was at least the floor keeps its
    publishers at the floor (`holds_cap`) until its share is None (audio only): lifting the
    caps then sent it every publisher at full rate, and on "4G weak" it sat at the base layer
    for 38 s after a cap of 190 kbit/s was lifted. One that never reached the floor caps
    nobody (its temporal layers and the pause serve it), unless it waits below the top layer
    (`_waits_below_top`) or its base layers fit only at the floor (`_caps_before_pause`): then
    its publishers are held at the floor too."""
    if not settings.cap_publishers:
        return []
    shares = {}
    for peer_id, session in room.peers.items():
        if session.connected and not session.closed:
            update_video_share(session, settings, now)
            share = session.cap_share
            if share is None:
                session.holds_cap = False
            elif share >= settings.cap_floor_bps:
                session.holds_cap = True
                shares[peer_id] = share
            elif (
                session.holds_cap
                or _waits_below_top(session, settings, now)
                or _caps_before_pause(session, settings)
            ):
                session.holds_cap = True
                shares[peer_id] = settings.cap_floor_bps
    events = []
    for session in list(room.peers.values()):
        cameras = [
            f for f in session.published.values() if _capped(f) and f.granted and not f.ended
        ]
        if session.closed or not session.connected or not cameras:
            continue
        weakest = min((shares[p] for p in cameras[0].subscribers if p in shares), default=None)
        if session.publish_cap.update(weakest):
            logger.info(
                "room %s: %s's camera capped at %s bps",
                room.room_id,
                session.peer_id,
                session.publish_cap.cap,
            )
            events.append(PublishLimit(room.room_id, session.peer_id, session.publish_cap.cap))
    return events


#: No more than this is reported to a publisher for its subscribers' audio loss: its own
#: loss-based rate control lowers its sending rate above 10 %.
AUDIO_LOSS_FLOOR_MAX = 0.08


def audio_loss_floor(room: Room, forwarder: TrackForwarder) -> float:
    """The worst audio loss reported by those receiving `forwarder` (0..AUDIO_LOSS_FLOOR_MAX),
    for the publisher's receiver reports (`adapter.floor_reported_loss`): its encoder then adds
    Opus in-band FEC for the links that lose. Subscribers sent RED are repaired by it and do
    not count."""
    worst = 0.0
    for peer_id, track in list(forwarder.subscribers.items()):
        session = room.peers.get(peer_id)
        if session is not None and not session.closed and not track.redundancy:
            worst = max(worst, session.estimator.loss("audio") or 0.0)
    return min(worst, AUDIO_LOSS_FLOOR_MAX)
