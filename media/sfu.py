"""In-process passthrough SFU: `SfuMediaNode` implements `media.interfaces.MediaNode`.

    publisher ─RTP─► RTCRtpReceiver ─(adapter: JitterFrame→av.Packet[Any], no decode)─► TrackForwarder
    TrackForwarder ─► ForwardedTrack (bounded queue) ─► RTCRtpSender.pack() ─► each subscriber
                   └─► Recording (bounded queue, writer thread)
    subscriber PLI/FIR ─► TrackForwarder.request_keyframe() (≈1/s) ─► PLI to the publisher

Negotiation: the browser offers first (`accept_offer`); whenever other participants' tracks
come or go, the server sends its own offer as a `PeerDescription` event and the browser (the
polite peer) answers via `accept_answer`. One asyncio.Lock per peer serializes all of this.

Forwarded tracks always get their own `sendonly` transceiver (`addTransceiver(track,
"sendonly")`). `addTrack` would instead reuse the participant's own transceiver of that kind
(aiortc reuses any transceiver whose sender has no track); that m-line is `sendonly` from the
browser, so the negotiated server direction stays `recvonly` and the server's sender is never
started: the "audio senders never started" bug from the prototype.

The forwarding itself (`TrackForwarder`, `ForwardedTrack`) and the SFU's `PeerSession` and
`Room` are in forwarding.py; every aiortc internal is behind adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

from aiortc import (
    InvalidAccessError,
    InvalidStateError,
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
    sdp,
)
from aiortc.exceptions import InternalError, OperationError
from aiortc.sdp import candidate_from_sdp

from media import adapter
from media.bandwidth import (
    MAX_LAYER,
    BandwidthEstimator,
    BandwidthSettings,
    LayerPolicy,
    PublishCapPolicy,
    VideoPausePolicy,
)
from media.congestion import apply_pause, audio_loss_floor, evaluate, publish_caps
from media.errors import (
    InvalidDescription,
    MediaFailure,
    MediaSaturated,
    NegotiationConflict,
    NegotiationTimeout,
    PeerNotFound,
    RecordingError,
)
from media.forwarding import (
    KEYFRAME_MIN_INTERVAL_S,
    SUBSCRIBER_KEYFRAME_INTERVAL_S,
    ForwardedTrack,
    PeerSession,
    Room,
    SubscriptionStats,
    TrackForwarder,
    log_room_stats,
)
from media.interfaces import (
    ActiveSpeaker,
    IceCandidate,
    IceServer,
    MediaEvent,
    PeerConnected,
    PeerDescription,
    PeerFailed,
    PeerQuality,
    PublishGrant,
    RecordingFile,
    RecordingStopped,
    SessionDescription,
    SubscribedTrack,
    SubscriberTracks,
    TrackKind,
    TrackPublished,
    TrackSource,
    UpstreamQuality,
)
from media.load import SATURATED_LAG_S, LoadShedder, LoopLag
from media.recorder import Recording

logger = logging.getLogger(__name__)

ICE_CONNECT_TIMEOUT_S = 20.0
NEGOTIATION_TIMEOUT_S = 10.0
MAX_QUEUED_EVENTS = 10_000
SPEAKER_INTERVAL_S = 0.3
DEBUG_STATS_INTERVAL_S = 5.0

_SDP_ERRORS = (
    ValueError,
    InvalidStateError,
    InvalidAccessError,
    OperationError,
    InternalError,
    KeyError,
    IndexError,
    AttributeError,
    TypeError,
)


def _link_back(session: PeerSession, track: ForwardedTrack) -> None:
    session.estimator.link_back()  # the loss its next reports span is the outage
    if not track.paused:
        track.forwarder.request_keyframe(at_once=True)


def _apply_redundancy(room: Room) -> None:
    """Each subscriber's audio senders repeat the frames its `AudioRedundancy` asks for; a
    sender that does not send RED (not negotiated, or not started) repeats none."""
    for session in list(room.peers.values()):
        frames = session.redundancy.frames
        for transceiver, track in list(session.subscriptions.values()):
            if track.kind == "audio":
                sent = adapter.set_audio_redundancy(transceiver.sender, frames)
                track.redundancy = frames if sent else 0


def upstream_changes(room: Room, now: float) -> list[UpstreamQuality]:
    """Each connected publisher's upstream grade (packets the server expected and received
    from it, `media.quality.UpstreamMeter`), as events only where it changed."""
    events = []
    for session in list(room.peers.values()):
        receivers = [f.receiver for f in session.published.values() if not f.ended]
        if not session.connected or session.closed or not receivers:
            continue
        expected = received = 0
        for receiver in receivers:
            e, r = adapter.received_counts(receiver)
            expected, received = expected + e, received + r
        grade = session.upstream.sample(now, expected, received)
        if grade is not None:
            events.append(UpstreamQuality(room.room_id, session.peer_id, grade))
    return events


def _validate_sdp(text: str) -> None:
    """aiortc parses almost anything (even "not an sdp") into a description with no media."""
    if not text.startswith("v=0"):
        raise InvalidDescription("SDP must start with v=0")
    parsed = sdp.SessionDescription.parse(text)
    if not any(m.kind in ("audio", "video") for m in parsed.media):
        raise InvalidDescription("SDP has no audio or video section")


class SfuMediaNode:
    """Passthrough SFU in this process. See the module docstring.

    Args:
        video_codec: "vp8" (default) or "h264" (constrained baseline, packetization-mode 1).
        host_addresses: if given, ICE gathers host candidates only on these addresses
            (process-wide, see `adapter.restrict_host_addresses`); None leaves aioice's default.
        ice_connect_timeout_s: a peer not `connected` by then gets PeerFailed and is closed.
        keyframe_min_interval_s: PLI throttle per publisher.
        subscriber_keyframe_interval_s: at most one keyframe per this per publisher for its
            subscribers' PLI/FIR (`TrackForwarder.subscriber_wants_keyframe`).
        load_probe: this worker's event-loop lag in seconds (`media.load.LoopLag`, started
            with the first room, by default); above `saturated_lag_s` no new room is opened
            (`MediaSaturated`).
        clock: seconds for the keyframe throttles, on `time.monotonic`'s timeline (packet
            arrival times are compared with it); tests inject one.
        bandwidth: thresholds of the audio-first policy (media/bandwidth.py).
    """

    def __init__(
        self,
        *,
        video_codec: Literal["vp8", "h264"] = "vp8",
        host_addresses: list[str] | None = None,
        ice_connect_timeout_s: float = ICE_CONNECT_TIMEOUT_S,
        keyframe_min_interval_s: float = KEYFRAME_MIN_INTERVAL_S,
        subscriber_keyframe_interval_s: float = SUBSCRIBER_KEYFRAME_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        load_probe: Callable[[], float] | None = None,
        saturated_lag_s: float = SATURATED_LAG_S,
        speaker_interval_s: float = SPEAKER_INTERVAL_S,
        bandwidth: BandwidthSettings | None = None,
    ) -> None:
        adapter.install_passthrough()
        if host_addresses is not None:
            adapter.restrict_host_addresses(host_addresses)
        self.video_codec = video_codec
        self._video_prefs = adapter.video_codec_preferences(video_codec)
        self._audio_prefs = adapter.audio_codec_preferences()
        self.ice_connect_timeout_s = ice_connect_timeout_s
        self.keyframe_min_interval_s = keyframe_min_interval_s
        self.subscriber_keyframe_interval_s = subscriber_keyframe_interval_s
        self._clock = clock
        self._load_probe = load_probe
        self.saturated_lag_s = saturated_lag_s
        #: Degrade before failing: the base temporal layer only, for everyone, while saturated.
        self.shedder = LoadShedder(saturated_lag_s)
        self.speaker_interval_s = speaker_interval_s
        self.bandwidth = bandwidth or BandwidthSettings()
        self._rooms: dict[str, Room] = {}
        self._events: asyncio.Queue[MediaEvent] = asyncio.Queue(maxsize=MAX_QUEUED_EVENTS)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # ------------------------------------------------------------ plumbing

    def clock(self) -> float:
        return self._clock()

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("media task %s failed", task.get_name(), exc_info=task.exception())

    def emit(self, event: MediaEvent) -> None:
        try:
            self._events.put_nowait(event)
        except asyncio.QueueFull:
            logger.warning("media event queue full, dropping %s", type(event).__name__)

    async def events(self) -> AsyncIterator[MediaEvent]:
        while True:
            yield await self._events.get()

    def _admit_room(self, room_id: str) -> None:
        """A saturated worker opens no new room (issue #18 item 7); those it has go on."""
        if self._load_probe is None:
            lag = LoopLag()
            self._load_probe = lag
            _ = self.spawn(lag.run(), "load-probe")
        lag_s = self._load_probe()
        if lag_s > self.saturated_lag_s:
            logger.warning(
                "media worker saturated (event loop %.0f ms late): room %s refused",
                lag_s * 1000,
                room_id,
            )
            raise MediaSaturated(f"media worker saturated ({lag_s * 1000:.0f} ms loop lag)")

    def _session(self, room_id: str, peer_id: str) -> PeerSession:
        room = self._rooms.get(room_id)
        session = room.peers.get(peer_id) if room else None
        if session is None:
            raise PeerNotFound(f"no media peer {peer_id} in room {room_id}")
        return session

    def subscription_stats(self, room_id: str) -> list[SubscriptionStats]:
        room = self._rooms.get(room_id)
        if room is None:
            return []
        return [
            SubscriptionStats(
                subscriber_id=s.peer_id,
                publisher_id=track.forwarder.publisher_id,
                kind=track.kind,  # type: ignore[arg-type]
                queued=track.queued,
                max_queued=track.max_queued,
                forwarded=track.forwarded,
                dropped=track.dropped,
                layer=track.layer,
                max_layer=track.max_layer,
                layer_dropped=track.layer_dropped,
                frames_in_by_tid=tuple(track.forwarder.layer_frames),
            )
            for s in room.peers.values()
            for _, track in s.subscriptions.values()
        ]

    # ------------------------------------------------------------ negotiation

    async def accept_offer(
        self,
        *,
        room_id: str,
        peer_id: str,
        offer: SessionDescription,
        ice_servers: list[IceServer],
        grant: PublishGrant,
    ) -> SessionDescription:
        if offer.type != "offer":
            raise InvalidDescription(f"expected an offer, got {offer.type!r}")
        room = self._rooms.get(room_id)
        if room is None:
            self._admit_room(room_id)
            room = self._rooms[room_id] = Room(room_id)
            room.bandwidth_task = self.spawn(self._bandwidth_loop(room), f"bandwidth:{room_id}")
            if logger.isEnabledFor(logging.DEBUG):
                room.debug_task = self.spawn(self._debug_loop(room), f"debug:{room_id}")
        session = room.peers.get(peer_id)
        is_new = session is None
        if session is None:
            # A new subscriber: have every publisher's next keyframe on its way while it negotiates.
            for forwarder in room.forwarders():
                if forwarder.publisher_id != peer_id and not forwarder.has_fresh_keyframe:
                    forwarder.request_keyframe()
            config = RTCConfiguration(
                iceServers=[
                    RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
                    for s in ice_servers
                ]
            )
            session = PeerSession(
                room,
                peer_id,
                RTCPeerConnection(configuration=config),
                grant,
                estimator=BandwidthEstimator(self.bandwidth),
                policy=VideoPausePolicy(self.bandwidth),
                layers=LayerPolicy(self.bandwidth),
                publish_cap=PublishCapPolicy(self.bandwidth),
            )
            room.peers[peer_id] = session
            self._wire_peer(session)
        session.grant = grant
        try:
            async with session.lock:
                if session.closed:
                    raise PeerNotFound(f"media peer {peer_id} was closed")
                if session.pc.signalingState != "stable":
                    raise NegotiationConflict(
                        "offer collides with a pending server offer; answer that first"
                    )
                answer = await self._answer(session, offer)
        except MediaFailure:
            if is_new:
                await self.close_peer(room_id=room_id, peer_id=peer_id)
            raise
        if is_new:
            session.watchdog = self.spawn(self._ice_watchdog(session), f"ice:{peer_id}")
            if any(f.publisher_id != peer_id for f in room.forwarders()):
                _ = self.spawn(self._renegotiate(session), f"renegotiate:{peer_id}")
        return answer

    async def _answer(self, session: PeerSession, offer: SessionDescription) -> SessionDescription:
        pc = session.pc
        try:
            _validate_sdp(offer.sdp)
            async with asyncio.timeout(NEGOTIATION_TIMEOUT_S):
                await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
                for transceiver in pc.getTransceivers():
                    audio = transceiver.kind == "audio"
                    receiving = transceiver.receiver.track is not None
                    if not (audio or receiving):
                        continue  # a server-made video m-line keeps its codec preferences
                    prefs = self._audio_prefs if audio else self._video_prefs
                    if not adapter.pin_negotiated_codecs(transceiver, prefs) and receiving:
                        raise InvalidDescription(
                            f"offer has no supported {transceiver.kind} codec "
                            f"({'Opus' if transceiver.kind == 'audio' else self.video_codec})"
                        )
                answer = await pc.createAnswer()
                await pc.setLocalDescription(answer)
        except TimeoutError as exc:
            raise NegotiationTimeout("negotiation timed out") from exc
        except _SDP_ERRORS as exc:
            logger.info(
                "room %s peer %s: offer rejected: %s", session.room.room_id, session.peer_id, exc
            )
            raise InvalidDescription(f"offer rejected: {exc}") from exc
        return SessionDescription(type="answer", sdp=pc.localDescription.sdp)

    async def accept_answer(
        self, *, room_id: str, peer_id: str, answer: SessionDescription
    ) -> None:
        session = self._session(room_id, peer_id)
        if answer.type != "answer":
            raise InvalidDescription(f"expected an answer, got {answer.type!r}")
        async with session.lock:
            if session.pc.signalingState != "have-local-offer":
                raise InvalidDescription("answer without a pending server offer")
            try:
                _validate_sdp(answer.sdp)
                async with asyncio.timeout(NEGOTIATION_TIMEOUT_S):
                    await session.pc.setRemoteDescription(
                        RTCSessionDescription(sdp=answer.sdp, type="answer")
                    )
            except TimeoutError as exc:
                raise NegotiationTimeout("negotiation timed out") from exc
            except _SDP_ERRORS as exc:
                raise InvalidDescription(f"answer rejected: {exc}") from exc
            for transceiver, track in session.subscriptions.values():
                if not track.active and transceiver.currentDirection in ("sendonly", "sendrecv"):
                    track.activate()
                    logger.debug(
                        "room %s: %s now receives %s's %s (mid %s)",
                        session.room.room_id,
                        peer_id,
                        track.forwarder.publisher_id,
                        track.kind,
                        transceiver.mid,
                    )
            again = session.renegotiate_needed
        if again:
            _ = self.spawn(self._renegotiate(session), f"renegotiate:{peer_id}")

    async def add_candidate(
        self, *, room_id: str, peer_id: str, candidate: IceCandidate | None
    ) -> None:
        session = self._session(room_id, peer_id)
        if candidate is None:
            await session.pc.addIceCandidate(None)
            return
        try:
            text = candidate.candidate.removeprefix("candidate:")
            if not text:
                return  # an empty candidate string marks the end of candidates
            parsed = candidate_from_sdp(text)
            parsed.sdpMid = candidate.sdp_mid
            parsed.sdpMLineIndex = candidate.sdp_mline_index
            await session.pc.addIceCandidate(parsed)
        except _SDP_ERRORS as exc:
            raise InvalidDescription(f"bad ICE candidate: {exc}") from exc

    def _sync_subscriptions(self, session: PeerSession) -> bool:
        """Add a sendonly transceiver per new forwarder, retire ended ones. True if changed."""
        changed = False
        room = session.room
        live = {f.key: f for f in room.forwarders() if f.publisher_id != session.peer_id}
        for key, (transceiver, track) in list(session.subscriptions.items()):
            if key not in live:
                track.stop()
                transceiver.sender.replaceTrack(None)
                transceiver.direction = "inactive"
                del session.subscriptions[key]
                changed = True
        for key, forwarder in live.items():
            if key in session.subscriptions:
                continue
            track = self._subscriber_track(forwarder, session.peer_id)
            transceiver = session.pc.addTransceiver(track, direction="sendonly")
            if forwarder.kind == "video":  # audio: the offer's table is Opus and RED already
                transceiver.setCodecPreferences(self._video_prefs)
            adapter.on_keyframe_request(transceiver.sender, track.request_keyframe)
            adapter.on_congestion_feedback(
                transceiver.sender, session.estimator.on_remb, session.estimator.on_report
            )
            if forwarder.kind == "video":
                # the subscriber's link is back: its decoder needs a keyframe now, not in 1 s
                adapter.on_link_back(
                    transceiver.sender, functools.partial(_link_back, session, track)
                )
            forwarder.subscribers[session.peer_id] = track
            session.subscriptions[key] = (transceiver, track)
            changed = True
        apply_pause(session)  # a new sender's video starts paused if the subscriber's is
        return changed

    async def _renegotiate(self, session: PeerSession) -> None:
        async with session.lock:
            if session.closed:
                return
            if session.pc.signalingState != "stable":
                session.renegotiate_needed = True
                return
            changed = self._sync_subscriptions(session)
            if not changed and not session.renegotiate_needed:
                return
            session.renegotiate_needed = False
            try:
                async with asyncio.timeout(NEGOTIATION_TIMEOUT_S):
                    offer = await adapter.create_offer(session.pc)
                    await session.pc.setLocalDescription(offer)
            except (TimeoutError, *_SDP_ERRORS) as exc:
                logger.warning(
                    "room %s peer %s: server offer failed: %s",
                    session.room.room_id,
                    session.peer_id,
                    exc,
                )
                self._fail(session, f"renegotiation failed: {exc}")
                return
            if changed:  # which track is whose, before the offer that brings them
                self.emit(self._subscriber_tracks(session))
            self.emit(
                PeerDescription(
                    session.room.room_id,
                    session.peer_id,
                    SessionDescription(type="offer", sdp=session.pc.localDescription.sdp),
                )
            )

    @staticmethod
    def _subscriber_tracks(session: PeerSession) -> SubscriberTracks:
        return SubscriberTracks(
            session.room.room_id,
            session.peer_id,
            tuple(
                SubscribedTrack(
                    track.id,
                    track.forwarder.publisher_id,
                    track.forwarder.kind,
                    track.forwarder.source,
                )
                for _, track in session.subscriptions.values()
            ),
        )

    def _renegotiate_others(self, room: Room, except_peer: str) -> None:
        for other in list(room.peers.values()):
            if other.peer_id != except_peer and not other.closed:
                _ = self.spawn(self._renegotiate(other), f"renegotiate:{other.peer_id}")

    # ------------------------------------------------------------ peer lifecycle

    def _wire_peer(self, session: PeerSession) -> None:
        pc = session.pc
        room = session.room

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            receiver = next(t.receiver for t in pc.getTransceivers() if t.receiver.track is track)
            kind: TrackKind = "audio" if track.kind == "audio" else "video"
            source: TrackSource = "microphone"
            if kind == "audio":
                granted = session.grant.audio
            else:
                videos = sum(1 for f in session.published.values() if f.kind == "video")
                granted = session.grant.video if videos == 0 else session.grant.screen
                source = "camera" if videos == 0 else "screen"
            forwarder = TrackForwarder(
                self,
                room,
                session.peer_id,
                kind,
                track.id,
                receiver,
                self.video_codec if kind == "video" else "opus",
                granted,
            )
            forwarder.source = source
            self._attach_publisher_track(track, forwarder)
            session.published[track.id] = forwarder
            logger.debug(
                "room %s peer %s: publishes %s track %s (granted: %s)",
                room.room_id,
                session.peer_id,
                kind,
                track.id,
                granted,
            )
            if not granted:
                logger.info(
                    "room %s peer %s: %s track beyond grant, not forwarded",
                    room.room_id,
                    session.peer_id,
                    kind,
                )
                return
            if kind == "audio":
                peer_id = session.peer_id
                adapter.observe_audio_level(
                    receiver, lambda level: room.speaker.add_level(peer_id, level)
                )
                if room.speaker_task is None:
                    room.speaker_task = self.spawn(
                        self._speaker_loop(room), f"speaker:{room.room_id}"
                    )
            self.emit(TrackPublished(room.room_id, session.peer_id, track.id, kind))
            self._renegotiate_others(room, session.peer_id)

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            if state == "connected" and not session.connected:
                session.connected = True
                self.emit(PeerConnected(room.room_id, session.peer_id))
            elif state == "failed":
                self._fail(session, "ICE/DTLS connection failed")
            elif state == "closed" and not session.closed:
                # Not closed by us: aioice ends a connection whose consent checks (RFC 7675)
                # went unanswered for 30 s, and aiortc reports that as `closed`, not `failed`.
                self._fail(session, "connection closed (ICE consent expired)")

    # Override points (the benchmark's re-encoding baseline replaces both).
    def _attach_publisher_track(self, track: MediaStreamTrack, forwarder: TrackForwarder) -> None:
        adapter.attach_sink(track, adapter.PassthroughSink(forwarder.on_frame, forwarder.on_end))
        if forwarder.kind == "audio":
            room = forwarder.room
            adapter.floor_reported_loss(
                forwarder.receiver, lambda: audio_loss_floor(room, forwarder)
            )
        if forwarder.kind != "video":
            adapter.complete_frames_early(forwarder.receiver, forwarder.kind)
            return
        session = forwarder.room.peers.get(forwarder.publisher_id)
        pc = session.pc if session is not None else None
        if session is not None and forwarder.source == "camera":
            cap = session.publish_cap
            adapter.floor_remb(forwarder.receiver, lambda: cap.cap)

        def max_wait_s() -> float:
            return adapter.loss_wait_s(adapter.round_trip_time_s(pc) if pc else None)

        forwarder.reassembly = adapter.loss_tolerant_video(
            forwarder.receiver,
            forwarder.codec,
            on_keyframe_needed=forwarder.on_keyframe_needed,
            max_wait_s=max_wait_s,
            rtt_s=lambda: adapter.round_trip_time_s(pc) if pc else None,
        )

    def _subscriber_track(self, forwarder: TrackForwarder, subscriber_id: str) -> ForwardedTrack:
        return ForwardedTrack(forwarder, subscriber_id)

    async def _ice_watchdog(self, session: PeerSession) -> None:
        await asyncio.sleep(self.ice_connect_timeout_s)
        if not session.connected and not session.closed:
            self._fail(session, f"not connected after {self.ice_connect_timeout_s:g} s")

    def _fail(self, session: PeerSession, reason: str) -> None:
        if session.closed:
            return
        logger.info("room %s peer %s failed: %s", session.room.room_id, session.peer_id, reason)
        self.emit(PeerFailed(session.room.room_id, session.peer_id, reason))
        _ = self.spawn(
            self.close_peer(room_id=session.room.room_id, peer_id=session.peer_id),
            f"close:{session.peer_id}",
        )

    async def close_peer(self, *, room_id: str, peer_id: str) -> None:
        room = self._rooms.get(room_id)
        session = room.peers.pop(peer_id, None) if room else None
        if room is None or session is None:
            return
        session.closed = True
        current = asyncio.current_task()
        if session.watchdog is not None and session.watchdog is not current:
            session.watchdog.cancel()
        for forwarder in session.published.values():
            forwarder.close()
        for _, track in session.subscriptions.values():
            track.stop()
            track.forwarder.subscribers.pop(peer_id, None)
        room.speaker.remove(peer_id)
        quality = session.quality.summary()
        if quality is not None:
            self.emit(PeerQuality(room_id, peer_id, quality))
        if session.published:
            self._renegotiate_others(room, peer_id)
        # Shielded: aiortc may be closing this connection itself (it does when the connection
        # fails); a cancelled await of its close would cancel the future its own close sets
        # at the end, which then dies halfway with InvalidStateError.
        await asyncio.shield(session.pc.close())

    async def close_room(self, *, room_id: str) -> None:
        room = self._rooms.get(room_id)
        if room is None:
            return
        if room.recording is not None:
            with contextlib.suppress(MediaFailure):
                await self.stop_recording(room_id=room_id)
        for peer_id in list(room.peers):
            await self.close_peer(room_id=room_id, peer_id=peer_id)
        for task in (room.speaker_task, room.bandwidth_task, room.debug_task):
            if task is not None:
                task.cancel()
        self._rooms.pop(room_id, None)

    async def close(self) -> None:
        self._closed = True
        for room_id in list(self._rooms):
            await self.close_room(room_id=room_id)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ moderation and keyframes

    async def set_forwarding(
        self, *, room_id: str, peer_id: str, kind: TrackKind, enabled: bool
    ) -> None:
        session = self._session(room_id, peer_id)
        for forwarder in session.published.values():
            if forwarder.kind != kind or forwarder.enabled == enabled:
                continue
            forwarder.enabled = enabled
            if enabled and kind == "video":
                for track in forwarder.subscribers.values():
                    track.waiting_keyframe = True
                forwarder.request_keyframe()

    async def request_keyframe(self, *, room_id: str, peer_id: str) -> None:
        session = self._session(room_id, peer_id)
        for _, track in session.subscriptions.values():
            track.forwarder.request_keyframe()

    async def set_receive_video(self, *, room_id: str, peer_id: str, enabled: bool) -> None:
        session = self._session(room_id, peer_id)
        session.receive_video = enabled
        apply_pause(session)

    # ------------------------------------------------------------ audio first, active speaker

    async def _bandwidth_loop(self, room: Room) -> None:
        while True:
            await asyncio.sleep(self.bandwidth.interval_s)
            now = time.monotonic()
            for session in list(room.peers.values()):
                session.estimator.on_rtt(adapter.round_trip_time_s(session.pc))
            for event in evaluate(room, self.bandwidth, now, self._load_cap()):
                self.emit(event)
            _apply_redundancy(room)
            for limit in publish_caps(room, self.bandwidth, now):
                self.emit(limit)
            for change in upstream_changes(room, now):
                self.emit(change)

    def _load_cap(self) -> int:
        """The highest temporal layer this worker forwards now (media.load.LoadShedder)."""
        if self._load_probe is None:
            return MAX_LAYER
        was = self.shedder.shedding
        cap = self.shedder.cap(self._load_probe())
        if self.shedder.shedding != was:
            logger.warning(
                "media worker %s: %s",
                "saturated" if self.shedder.shedding else "recovered",
                "base temporal layer only for every subscriber"
                if self.shedder.shedding
                else "every temporal layer again",
            )
        return cap

    async def _speaker_loop(self, room: Room) -> None:
        while True:
            await asyncio.sleep(self.speaker_interval_s)
            changed, levels = room.speaker.pick()
            if changed:
                self.emit(ActiveSpeaker(room.room_id, room.speaker.current, levels))

    # ------------------------------------------------------------ diagnostics

    async def _debug_loop(self, room: Room) -> None:
        """While DEBUG is enabled: per peer, frames in per published track and frames
        forwarded per subscription, every DEBUG_STATS_INTERVAL_S."""
        while True:
            await asyncio.sleep(DEBUG_STATS_INTERVAL_S)
            if logger.isEnabledFor(logging.DEBUG):
                log_room_stats(logger, room)

    # ------------------------------------------------------------ recording

    async def start_recording(self, *, room_id: str, directory: Path) -> None:
        room = self._rooms.get(room_id)
        if room is None:
            raise RecordingError(f"no media room {room_id}")
        if room.recording is not None:
            raise RecordingError(f"room {room_id} is already being recorded")
        if self.video_codec != "vp8":
            raise RecordingError("recording needs VP8 video (WebM)")
        loop = asyncio.get_running_loop()

        def failed(exc: BaseException) -> None:  # writer thread
            loop.call_soon_threadsafe(self._recording_failed, room_id, exc)

        try:
            room.recording = await asyncio.to_thread(Recording, room_id, Path(directory), failed)
        except OSError as exc:
            raise RecordingError(f"cannot record into {directory}: {exc}") from exc
        for forwarder in room.forwarders():
            if forwarder.kind == "video":
                forwarder.request_keyframe(at_once=True)

    def _recording_failed(self, room_id: str, exc: BaseException) -> None:
        """A write failed (disk full...): stop recording now, keep the call going, and report
        the files written so far (playable up to the failure) as an interrupted recording."""
        room = self._rooms.get(room_id)
        if room is None or room.recording is None:
            return
        logger.error("room %s: recording stopped after a write failure: %s", room_id, exc)
        _ = self.spawn(self.stop_recording(room_id=room_id), f"recording-failed:{room_id}")

    async def stop_recording(self, *, room_id: str) -> tuple[RecordingFile, ...]:
        room = self._rooms.get(room_id)
        recording = room.recording if room else None
        if room is None or recording is None:
            raise RecordingError(f"room {room_id} is not being recorded")
        room.recording = None
        files = await asyncio.to_thread(recording.stop)
        if recording.error is not None:
            logger.error("room %s: recording error: %s", room_id, recording.error)
        self.emit(RecordingStopped(room_id, files, interrupted=recording.error is not None))
        return files
