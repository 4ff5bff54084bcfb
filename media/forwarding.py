"""Forwarding inside the passthrough SFU: one `TrackForwarder` per published track fans its
encoded frames out to one `ForwardedTrack` per subscriber (a bounded queue that an aiortc
sender drains) and to the room's recording; `PeerSession` and `Room` are the SFU's view of a
participant and of a room. No negotiation here (sfu.py), no aiortc internals (adapter/).

    RTCRtpReceiver ─(adapter)─► TrackForwarder.on_frame ─┬─► ForwardedTrack (bounded) ─► sender
                                                         └─► Recording (bounded, writer thread)
    subscriber PLI/FIR ─► TrackForwarder.request_keyframe() (≈1/s) ─► PLI to the publisher
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

import av
from aiortc import MediaStreamTrack, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from media import adapter
from media.bandwidth import (
    MAX_LAYER,
    AudioRedundancy,
    BandwidthEstimator,
    LayerPolicy,
    PublishCapPolicy,
    RateMeter,
    VideoPausePolicy,
)
from media.interfaces import PublishGrant, TrackKind, TrackSource
from media.quality import QualityMeter, UpstreamMeter
from media.recorder import Recording, TrackKey
from media.speaker import SpeakerDetector

logger = logging.getLogger(__name__)

MAX_QUEUED_VIDEO_FRAMES = 30  # 2 s at 15 fps
MAX_QUEUED_AUDIO_FRAMES = 50  # 1 s of 20 ms Opus frames
KEYFRAME_MIN_INTERVAL_S = 1.0
#: Keyframe requests (PLI/FIR) from subscribers reach a publisher at most this often: one weak
#: subscriber asking all the time must not make everyone's video a stream of keyframes.
SUBSCRIBER_KEYFRAME_INTERVAL_S = 3.0
# A subscription may start from a keyframe already received if it is at most this old: the
# frames since then reach the subscriber as a short burst, which its jitter buffer absorbs.
FRESH_KEYFRAME_S = 0.25
#: A subscriber whose temporal layer cap went up waits this long for a layer-sync frame of the
#: next layer, then asks the publisher for a keyframe (throttled per publisher as any request).
LAYER_SYNC_WAIT_S = 4.0
#: RFC 7741 TIDs are 2 bits; per-layer bitrates are kept for all four.
TIDS = 4


class ForwarderHost(Protocol):
    """What a forwarder needs from its media node (`SfuMediaNode`)."""

    @property
    def keyframe_min_interval_s(self) -> float: ...

    @property
    def subscriber_keyframe_interval_s(self) -> float: ...

    def clock(self) -> float: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...


def _token(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", value)[:48]


class ForwardedTrack(MediaStreamTrack):
    """One subscriber's copy of one published track: a bounded queue of encoded frames.

    Video starts at a keyframe. When the queue is full (the subscriber's sender is not keeping
    up) the frame is dropped, video waits for the next keyframe and one is requested.

    Before the subscriber's answer starts the sender (`active`), video is already kept from a
    keyframe on: the publisher's last keyframe if it is fresh (`FRESH_KEYFRAME_S`), else the next
    one (asked for when the subscriber's first offer came in). At activation a fresh start is
    sent at once; only a missing or stale one costs a keyframe request and its round trip.
    """

    def __init__(self, forwarder: TrackForwarder, subscriber_id: str) -> None:
        super().__init__()
        self.kind = forwarder.kind
        # The msid track id the subscriber sees: "<publisher>.<kind>.<random>".
        self._id = f"{_token(forwarder.publisher_id)}.{forwarder.kind}.{uuid.uuid4().hex[:8]}"
        self.forwarder = forwarder
        self.subscriber_id = subscriber_id
        self.max_queued = (
            MAX_QUEUED_VIDEO_FRAMES if forwarder.kind == "video" else MAX_QUEUED_AUDIO_FRAMES
        )
        # A single-consumer queue (the sender's RTP task): a deque and at most one waiter,
        # leaner per frame than asyncio.Queue (no unfinished-task Event, no getter list).
        self._queue: collections.deque[av.Packet[Any] | None] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.active = False  # set once the subscriber's answer made the sender start
        self.waiting_keyframe = forwarder.kind == "video"
        self.started_at = 0.0  # arrival of the keyframe that began an inactive video queue
        self.forwarded = 0
        self.dropped = 0
        self.skipped = 0  # video frames not forwarded while waiting for a keyframe
        self.paused = False  # video held back from this subscriber (audio first, audio only)
        self.paused_frames = 0
        # VP8 temporal layers: frames above `layer` are not forwarded; `max_layer` is the cap
        # chosen for this subscriber (LayerPolicy); `layer` climbs to it one layer at a time,
        # at a layer-sync frame of the next layer or at a keyframe.
        self.max_layer = MAX_LAYER
        self.layer = MAX_LAYER
        self.layer_up_since: float | None = None  # waiting for a sync frame since then
        self.layer_dropped = 0  # frames not forwarded because of their temporal layer
        # audio: earlier frames the subscriber's sender repeats in each packet (RED), 0 when
        # it sends none (media.congestion.evaluate; applied by the SFU through the adapter)
        self.redundancy = 0
        fresh = forwarder.fresh_frames()
        if fresh:
            self._queue.extend(fresh)
            self.forwarded += len(fresh)
            self.waiting_keyframe = False
            self.started_at = forwarder.keyframe_at

    @property
    def queued(self) -> int:
        return len(self._queue)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def push(
        self, packet: av.Packet[Any], keyframe: bool, layer: adapter.TemporalLayer | None = None
    ) -> None:
        if self.readyState != "live" or not (self.active or self.kind == "video"):
            return
        if self.paused:
            self.paused_frames += 1
            return
        if keyframe:  # references nothing: every layer up to the cap may follow
            self.layer = self.max_layer
            self.layer_up_since = None
        elif layer is not None and layer.tid > self.layer:
            # Frames of a layer reference only that layer and those below (RFC 7741, the VP8
            # temporal pattern), so dropping them never breaks what is forwarded. Climb only
            # at a frame of the next layer with the layer-sync bit: it references the base
            # layer alone. A base-layer frame is not enough (the next layer-1 frame may refer
            # to an earlier layer-1 frame this subscriber never got).
            if layer.sync and layer.tid == self.layer + 1 and layer.tid <= self.max_layer:
                self.layer = layer.tid
                if self.layer == self.max_layer:
                    self.layer_up_since = None
            else:
                self.layer_dropped += 1
                return
        if self.waiting_keyframe:
            if not keyframe:
                self.skipped += 1
                return
            self.waiting_keyframe = False
            if not self.active:
                self.started_at = time.monotonic()
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "room %s: %s gets %s's video from a keyframe (%d frames skipped)",
                    self.forwarder.room.room_id,
                    self.subscriber_id,
                    self.forwarder.publisher_id,
                    self.skipped,
                )
        if len(self._queue) >= self.max_queued:
            self.dropped += 1
            if self.kind == "video":
                self.waiting_keyframe = True
                if self.active:
                    self.forwarder.request_keyframe()
                else:  # not started yet: begin again from a newer keyframe
                    self._queue.clear()
            return
        self._queue.append(packet)
        self.forwarded += 1
        self._wake()

    def set_paused(self, paused: bool) -> None:
        """Hold this subscriber's video back (what is queued goes too) or resume it from a
        keyframe (a throttled request). Audio is never paused."""
        if self.kind != "video" or paused == self.paused:
            return
        self.paused = paused
        if paused:
            if self.readyState == "live":
                self._queue.clear()
            return
        self.waiting_keyframe = True
        if self.active:
            self.forwarder.request_keyframe()

    def set_max_layer(self, max_layer: int, now: float) -> None:
        """The subscriber's temporal layer cap: down at once (frames above it are dropped from
        the next one on), up from the next layer-sync frame (or keyframe)."""
        if self.kind != "video" or max_layer == self.max_layer:
            return
        self.max_layer = max_layer
        if max_layer < self.layer:
            self.layer = max_layer
            self.layer_up_since = None
        elif self.layer_up_since is None:
            self.layer_up_since = now

    def check_layer_sync(self, now: float) -> None:
        """No layer-sync frame came within LAYER_SYNC_WAIT_S of a raised cap: a keyframe
        (throttled per publisher) lets this subscriber climb."""
        since = self.layer_up_since
        if since is None or self.layer >= min(self.max_layer, self.forwarder.top_layer):
            self.layer_up_since = None
            return
        if now - since >= LAYER_SYNC_WAIT_S and not self.paused:
            self.layer_up_since = now
            self.forwarder.request_keyframe()

    def request_keyframe(self) -> None:
        """The subscriber asked (PLI/FIR): pass it on unless its video is paused, through the
        publisher's subscriber throttle (`TrackForwarder.subscriber_wants_keyframe`)."""
        if not self.paused:
            self.forwarder.subscriber_wants_keyframe()

    def activate(self) -> None:
        """The sender has started: keep a fresh start, else ask the publisher for a keyframe."""
        self.active = True
        if self.kind != "video":
            return
        if not self.waiting_keyframe and time.monotonic() - self.started_at > FRESH_KEYFRAME_S:
            self._queue.clear()  # stale: would play late; start from a new keyframe instead
            self.waiting_keyframe = True
        if self.waiting_keyframe:
            self.forwarder.request_keyframe()

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        queue = self._queue
        while not queue:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        packet = queue.popleft()
        if packet is None:
            raise MediaStreamError
        return packet

    def stop(self) -> None:
        if self.readyState == "live":
            super().stop()
            self._queue.clear()
            self._queue.append(None)
            self._wake()


class TrackForwarder:
    """One published track: fans its encoded frames out to subscribers and the recording."""

    def __init__(
        self,
        node: ForwarderHost,
        room: Room,
        publisher_id: str,
        kind: TrackKind,
        track_id: str,
        receiver: Any,
        codec: str,
        forwarded: bool,
    ) -> None:
        self.node = node
        self.room = room
        self.publisher_id = publisher_id
        self.kind: TrackKind = kind
        self.track_id = track_id
        self.receiver = receiver
        self.codec = codec
        self.granted = forwarded
        #: What it carries: "microphone", "camera", or "screen" (a participant's second video).
        self.source: TrackSource = "microphone" if kind == "audio" else "camera"
        self.enabled = True  # moderation (forced mute)
        self.subscribers: dict[str, ForwardedTrack] = {}
        self.frames_in = 0
        self.bytes_in = 0
        self.rate = RateMeter()  # bits per second of what it forwards, measured
        # VP8 temporal layers: bytes and measured bits/s per TID (a frame without one is TID 0)
        self.layer_bytes = [0] * TIDS
        self.layer_rates = [RateMeter() for _ in range(TIDS)]
        self.layer_frames = [0] * TIDS  # frames in per TID (diagnostics, e2e)
        self.top_layer = 0  # the highest TID seen
        self.keyframes_in = 0
        self.plis_sent = 0
        self.ended = False
        self.keyframe_at = 0.0  # arrival of the last keyframe
        self._since_keyframe: list[av.Packet[Any]] = []  # while that keyframe is fresh
        self._last_pli_at = -1e9
        self._pli_scheduled: asyncio.TimerHandle | None = None
        self._last_subscriber_pli_at = -1e9
        self._subscriber_pli_scheduled: asyncio.TimerHandle | None = None
        self.subscriber_requests = 0  # PLI/FIR from subscribers (diagnostics, tests)
        self.subscriber_requests_coalesced = 0  # of those, answered by another or none needed
        self.reassembly: adapter.LossTolerantVideo | None = None  # video: its counters

    def on_keyframe_needed(self, urgent: bool) -> None:
        """The receive path dropped frames it could not complete (throttled request), or the
        publisher's packets resumed after its link was down (`urgent`: asked at once)."""
        self.request_keyframe(at_once=urgent)

    @property
    def key(self) -> str:
        return f"{self.publisher_id}/{self.track_id}"

    def on_frame(
        self,
        packet: av.Packet[Any],
        arrival_monotonic_s: float,
        layer: adapter.TemporalLayer | None = None,
    ) -> None:
        self.frames_in += 1
        self.bytes_in += packet.size
        tid = layer.tid if layer is not None else 0
        self.layer_bytes[tid] += packet.size
        self.layer_frames[tid] += 1
        if tid > self.top_layer:
            self.top_layer = tid
        if not (self.granted and self.enabled):
            return
        data = bytes(packet) if (self.kind == "video" or self.room.recording) else b""
        keyframe = self.kind == "audio" or adapter.is_keyframe(self.codec, data)
        if self.kind == "video":
            if keyframe:
                self.keyframes_in += 1
                self.keyframe_at = arrival_monotonic_s
                self._since_keyframe = [packet]
            elif self._since_keyframe:
                if arrival_monotonic_s - self.keyframe_at <= FRESH_KEYFRAME_S:
                    self._since_keyframe.append(packet)
                else:
                    self._since_keyframe = []
        for track in self.subscribers.values():
            track.push(packet, keyframe, layer)
        recording = self.room.recording
        if recording is not None:
            assert packet.pts is not None and packet.time_base is not None
            waiting = recording.write(
                TrackKey(self.publisher_id, self.kind, self.track_id),
                self.codec,
                data,
                packet.pts,
                packet.time_base,
                time.time(),
                keyframe,
            )
            if waiting:
                self.request_keyframe()  # throttled: one PLI per KEYFRAME_MIN_INTERVAL_S

    def on_end(self) -> None:
        self.ended = True

    def update_rates(self, now: float) -> None:
        self.rate.update(self.bytes_in, now)
        for meter, total in zip(self.layer_rates, self.layer_bytes, strict=True):
            meter.update(total, now)

    def rate_up_to(self, layer: int) -> float | None:
        """Bits/s of layers 0..`layer` (all of it for a stream without temporal layers)."""
        if self.top_layer == 0 or layer >= self.top_layer:
            return self.rate.bps
        rates = [r.bps for r in self.layer_rates[: layer + 1]]
        if any(r is None for r in rates):
            return self.rate.bps
        return sum(r for r in rates if r is not None)

    @property
    def has_fresh_keyframe(self) -> bool:
        return bool(self._since_keyframe) and (
            time.monotonic() - self.keyframe_at <= FRESH_KEYFRAME_S
        )

    def fresh_frames(self) -> list[av.Packet[Any]]:
        """The last keyframe and the frames since, if it is fresh enough to start a subscriber."""
        return list(self._since_keyframe) if self.has_fresh_keyframe else []

    def request_keyframe(self, *, at_once: bool = False) -> None:
        """PLI to the publisher, at most one per KEYFRAME_MIN_INTERVAL_S; later ones coalesce.
        `at_once`: a one-off need that must not wait out the interval (a recording starts:
        everything until the publisher's next keyframe is lost to it)."""
        if self.kind != "video" or self.ended:
            return
        now = self.node.clock()
        wait_s = self._last_pli_at + self.node.keyframe_min_interval_s - now
        if wait_s <= 0 or at_once:
            if self._pli_scheduled is not None:  # this PLI answers the waiting requests too
                self._pli_scheduled.cancel()
                self._pli_scheduled = None
            self._last_pli_at = now
            _ = self.node.spawn(self._send_pli(), f"pli:{self.key}")
        elif self._pli_scheduled is None:
            loop = asyncio.get_running_loop()

            def fire() -> None:
                self._pli_scheduled = None
                self.request_keyframe()

            self._pli_scheduled = loop.call_later(wait_s, fire)

    def subscriber_wants_keyframe(self) -> None:
        """A subscriber's PLI/FIR. It costs the publisher (and every other subscriber, who gets
        the bigger keyframe too) at most one keyframe per `subscriber_keyframe_interval_s`:
        a request while a keyframe arrived within `FRESH_KEYFRAME_S` is already answered (that
        keyframe went to this subscriber), one within the interval of the last PLI sent for
        any reason waits to its end, and all those waiting then make one request."""
        if self.kind != "video" or self.ended:
            return
        self.subscriber_requests += 1
        now = self.node.clock()
        if self.keyframes_in and now - self.keyframe_at <= FRESH_KEYFRAME_S:
            self.subscriber_requests_coalesced += 1
            return
        last = max(self._last_subscriber_pli_at, self._last_pli_at)
        wait_s = last + self.node.subscriber_keyframe_interval_s - now
        if wait_s <= 0:
            if self._subscriber_pli_scheduled is not None:  # this one answers it
                self._subscriber_pli_scheduled.cancel()
                self._subscriber_pli_scheduled = None
            self._last_subscriber_pli_at = now
            self.request_keyframe()
            return
        self.subscriber_requests_coalesced += 1
        if self._subscriber_pli_scheduled is None:
            since = now

            def fire() -> None:
                self._subscriber_pli_scheduled = None
                if not self.ended and self.keyframe_at <= since:  # none came meanwhile
                    self._last_subscriber_pli_at = self.node.clock()
                    self.request_keyframe()

            self._subscriber_pli_scheduled = asyncio.get_running_loop().call_later(wait_s, fire)

    async def _send_pli(self) -> None:
        sent = await adapter.send_pli(self.receiver)
        if sent:
            self.plis_sent += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "room %s: PLI to %s for %s%s",
                self.room.room_id,
                self.publisher_id,
                self.track_id,
                "" if sent else " not sent: no SSRC received yet",
            )

    def close(self) -> None:
        self.ended = True
        self._since_keyframe = []
        if self._pli_scheduled is not None:
            self._pli_scheduled.cancel()
        if self._subscriber_pli_scheduled is not None:
            self._subscriber_pli_scheduled.cancel()
        for track in self.subscribers.values():
            track.stop()
        self.subscribers.clear()


@dataclass(eq=False)
class PeerSession:
    room: Room
    peer_id: str
    pc: RTCPeerConnection
    grant: PublishGrant
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    published: dict[str, TrackForwarder] = field(default_factory=dict)
    # forwarder key -> (server transceiver, the subscriber's ForwardedTrack)
    subscriptions: dict[str, tuple[Any, ForwardedTrack]] = field(default_factory=dict)
    renegotiate_needed: bool = False
    connected: bool = False
    closed: bool = False
    watchdog: asyncio.Task[None] | None = None
    # audio first (media/bandwidth.py): this participant as a subscriber
    estimator: BandwidthEstimator = field(default_factory=BandwidthEstimator)
    policy: VideoPausePolicy = field(default_factory=VideoPausePolicy)
    layers: LayerPolicy = field(default_factory=LayerPolicy)  # the step before the pause
    # this participant as a publisher: the cap on its camera its weakest subscriber asks for
    publish_cap: PublishCapPolicy = field(default_factory=PublishCapPolicy)
    # as a subscriber: earlier audio frames repeated in each packet sent to it (RED)
    redundancy: AudioRedundancy = field(default_factory=AudioRedundancy)
    # as a subscriber: what it can take per video it receives (media.congestion.publish_caps)
    cap_share: float | None = None
    # as a subscriber: its share was at least the cap floor, so its publishers were fitted to it
    holds_cap: bool = False
    receive_video: bool = True  # False: the participant chose audio only
    reported_paused: set[str] = field(default_factory=set)  # publishers told as paused
    quality: QualityMeter = field(default_factory=QualityMeter)  # for the session record
    upstream: UpstreamMeter = field(default_factory=UpstreamMeter)  # what it sends, as received


@dataclass(eq=False)
class Room:
    room_id: str
    peers: dict[str, PeerSession] = field(default_factory=dict)
    recording: Recording | None = None
    speaker: SpeakerDetector = field(default_factory=SpeakerDetector)
    speaker_task: asyncio.Task[None] | None = None
    bandwidth_task: asyncio.Task[None] | None = None
    debug_task: asyncio.Task[None] | None = None

    def forwarders(self) -> list[TrackForwarder]:
        return [
            f
            for p in self.peers.values()
            for f in p.published.values()
            if f.granted and not f.ended
        ]


@dataclass(frozen=True, slots=True)
class SubscriptionStats:
    """Diagnostics for one (subscriber, publisher track) pair."""

    subscriber_id: str
    publisher_id: str
    kind: TrackKind
    queued: int
    max_queued: int
    forwarded: int
    dropped: int
    #: VP8 temporal layers: this subscriber's current layer and cap, frames not forwarded for
    #: their layer, and the publisher's frames in per TID 0..3
    layer: int = MAX_LAYER
    max_layer: int = MAX_LAYER
    layer_dropped: int = 0
    frames_in_by_tid: tuple[int, ...] = (0, 0, 0, 0)


def log_room_stats(log: logging.Logger, room: Room) -> None:
    """DEBUG: per peer, frames in per published track and frames forwarded per subscription."""
    levels = room.speaker.levels(time.monotonic())
    log.debug(
        "room %s: speaker %s, audio levels %s",
        room.room_id,
        room.speaker.current,
        {peer: round(level) for peer, level in levels.items()},
    )
    for peer_id, session in list(room.peers.items()):
        published = ", ".join(
            f"{f.kind} in={f.frames_in} key={f.keyframes_in} pli={f.plis_sent}"
            + (
                f" stalls={f.reassembly.stalls} dropped={f.reassembly.frames_dropped}"
                f" resumes={f.reassembly.resumes} layer_skips={f.reassembly.layer_skips}"
                if f.reassembly is not None
                else ""
            )
            + f" kbps={(f.rate.bps or 0) / 1000:.0f}"
            + f"{'' if f.granted and f.enabled else ' (not forwarded)'}"
            for f in session.published.values()
        )
        subscribed = ", ".join(
            f"{t.forwarder.publisher_id}/{t.kind}{'' if t.active else ' (inactive)'}"
            f" fwd={t.forwarded} drop={t.dropped} skip={t.skipped}"
            f"{' waiting-key' if t.waiting_keyframe else ''}"
            f"{f' paused({t.paused_frames})' if t.paused else ''} q={t.queued}"
            for _, t in session.subscriptions.values()
        )
        estimate = session.estimator.estimate_bps()
        loss = session.estimator.loss(None)
        log.debug(
            "room %s peer %s (%s): published [%s] subscribed [%s] estimate %s kbps loss %s%s",
            room.room_id,
            peer_id,
            session.pc.connectionState,
            published,
            subscribed,
            None if estimate is None else estimate // 1000,
            None if loss is None else round(loss, 3),
            " video paused" if session.policy.paused else "",
        )
