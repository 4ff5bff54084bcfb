"""Loss-tolerant video reassembly and link-back detection (issue #18).

Replaces `jitter._MarkerCompletedVideo` for passthrough video (see `loss_tolerant_video`): a
packet that NACK/RTX does not recover within two and a half round trips no longer holds back
every later frame; the incomplete frames are dropped and output resumes at the next keyframe. It
touches no aiortc internals beyond what `complete_frames_early` already does (the receiver's
`__jitter_buffer` attribute, the `add(packet) -> (pli_flag, JitterFrame | None)` contract,
`RtpPacket` fields and `_data`), plus the receiver's `__nack_generator.missing`, the sender's
`__rtt` and `RTCRtpSender._handle_rtcp_packet` (checked in `internals.check_aiortc_internals`).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from typing import Any

import aiortc
import aiortc.jitterbuffer
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import aiortc.rtp

from media.adapter.bitstream import TemporalLayer, Vp8Descriptor, is_keyframe, vp8_descriptor

#: Shortest and longest wait for a missing packet once the frames after it are complete.
LOSS_WAIT_MIN_S = 0.1
LOSS_WAIT_MAX_S = 1.0
#: The wait in round trips: room for a second NACK (NACK_RETRY_RTTS) to be answered, which at
#: two round trips came just too late on a 4G uplink.
LOSS_WAIT_RTTS = 2.5
#: Round trip assumed before one is measured.
DEFAULT_RTT_S = 0.1
#: No video packet from a publisher for this long, then one: its link was down.
RESUME_AFTER_S = 0.5
_REASSEMBLY_CAPACITY = 512  # packets held at most (aiortc's video capacity)
_MAX_MISORDER = 100  # aiortc.jitterbuffer.MAX_MISORDER: further back means a new sequence
_MAX_TRACKED_GAP = 64  # longer runs of missing packets are an outage, not a loss to time
#: At most this many frames given up on at once may cost a temporal layer instead of a keyframe
_MAX_LOST_FRAMES = 8
#: A packet still missing is asked for again after this many round trips (at least
#: NACK_RETRY_MIN_S): aiortc NACKs only when a new gap appears, so a lost retransmission was
#: asked for again only at the next loss, usually after the wait was over.
NACK_RETRY_RTTS = 1.2
NACK_RETRY_MIN_S = 0.02
#: A keyframe asked for and not begun arriving after this many round trips plus
#: KEYFRAME_RETRY_SLACK_S (the encoder's next frame), at least KEYFRAME_RETRY_MIN_S, is asked
#: for again: a PLI lost on a lossy link otherwise froze the video until the subscribers' own
#: requests came, 3 s later (the SFU's throttle still spaces the requests).
KEYFRAME_RETRY_RTTS = 2.0
KEYFRAME_RETRY_SLACK_S = 0.2
KEYFRAME_RETRY_MIN_S = 0.5


def loss_wait_s(rtt_s: float | None) -> float:
    """How long a frame waits for a retransmission: LOSS_WAIT_RTTS round trips, within bounds."""
    rtt = DEFAULT_RTT_S if rtt_s is None else rtt_s
    return min(LOSS_WAIT_MAX_S, max(LOSS_WAIT_MIN_S, LOSS_WAIT_RTTS * rtt))


def vp8_starts_frame(payload: bytes) -> bool:
    """RFC 7741 §4.2: S bit set and partition index 0 is the first packet of a frame."""
    return len(payload) > 0 and payload[0] & 0x17 == 0x10


def h264_starts_keyframe(payload: bytes) -> bool:
    """RFC 6184: a STAP-A, an SPS, or the first fragment (FU-A) of an IDR slice."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (5, 7, 24):
        return True
    return (
        nal_type == 28
        and len(payload) > 1
        and bool(payload[1] & 0x80)
        and payload[1] & 0x1F in (5, 7)
    )


class LossTolerantVideo:
    """Video reassembly that never waits for a lost packet longer than a bound.

    Like `_MarkerCompletedVideo`, a frame leaves at its marker bit (or when the next frame
    begins) once every packet of it is present, in order. Unlike aiortc's buffer, a gap does
    not hold back every later frame until 512 newer packets push it out:

    - The wait for a missing packet starts once the frame holding it is otherwise over (a
      marked packet after the gap has arrived): a keyframe that takes a second to cross a slow
      uplink is not cut short while its own packets still arrive. After `wait_s()`
      (`loss_wait_s` of the round trip, or longer if retransmissions were seen to take longer,
      at most LOSS_WAIT_MAX_S) the incomplete frame(s) are dropped, `on_keyframe_needed
      (False)` asks for a keyframe (the caller throttles), and nothing is handed over until a
      complete keyframe: a subscriber's decoder never sees a frame that refers to a dropped one.
    - Unless every frame dropped so is of a VP8 temporal layer above the base: then no keyframe
      is needed (`_lowest_layer_before`: the TIDs of their packets that did arrive; for a frame
      of which none did, the TL0PICIDX of the next one says whether it was a base frame). Frames
      of that layer and above are dropped (`layer_limit`) until a layer-sync frame of the next
      layer up (the rule `ForwardedTrack` follows for a subscriber), and the base layer flows on.
      Half the frames of L1T3 are of layer 2, which no other frame references.
    - Until then a missing packet is asked for again (`send_nack(ssrc, seqs)`) every
      NACK_RETRY_RTTS round trips (`rtt_s()`), checked as packets arrive: a retransmission
      lost too no longer costs a keyframe.
    - While a keyframe is awaited, frames before a keyframe that has started arriving are
      dropped at once, so output resumes as soon as that keyframe is complete. One that has not
      begun to arrive `keyframe_retry_s()` after it was asked for is asked for again (the
      request or the keyframe's first packet may be lost).
    - Packets of frames already handed over or dropped (late retransmissions, duplicates) are
      discarded.
    - The first packet after `RESUME_AFTER_S` of silence with packets missing before it (the
      publisher's link was down) drops
      whatever was held, waits for a keyframe and asks for one with `on_keyframe_needed(True)`:
      at once, not throttled.

    `clock()` is monotonic seconds (tests inject their own). `add` only ever returns
    `pli_flag=False`: keyframe requests go through `on_keyframe_needed`, which the SFU throttles.
    """

    def __init__(
        self,
        codec: str,
        *,
        on_keyframe_needed: Callable[[bool], None] | None = None,
        max_wait_s: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
        nack_missing: set[int] | None = None,
        send_nack: Callable[[int, list[int]], None] | None = None,
        rtt_s: Callable[[], float | None] | None = None,
    ) -> None:
        self.codec = codec
        self._send_nack = send_nack
        self._rtt_s = rtt_s or (lambda: None)
        # the receiver's NackGenerator.missing: packets given up on are no longer asked for
        self._nack_missing = nack_missing
        self._on_keyframe_needed = on_keyframe_needed
        self._max_wait_s = max_wait_s or (lambda: loss_wait_s(None))
        self._clock = clock
        self._packets: dict[int, Any] = {}  # extended sequence number -> RtpPacket
        self._next: int | None = None  # extended seq of the first packet not handed over
        self._highest = 0  # highest extended seq seen
        self._last_marker = -1  # highest extended seq of a stored marked packet
        self._before_next: Any = None  # the packet at _next - 1, if it was seen
        self._blocked_since: float | None = None
        self._last_arrival: float | None = None
        # missing extended seq -> (when noticed, when last asked for)
        self._gaps: dict[int, tuple[float, float]] = {}
        self._recovery_s: collections.deque[float] = collections.deque(maxlen=16)
        self.waiting_keyframe = False
        self._keyframe_retry_at: float | None = None  # when an awaited keyframe is asked again
        #: VP8 temporal layers: after a frame of layer L > 0 was dropped, frames above L - 1
        #: are dropped until a layer-sync frame climbs back (None: every layer passes)
        self.layer_limit: int | None = None
        # the VP8 descriptor of the last frame out (its PictureID and TL0PICIDX count the lost)
        self._last: Vp8Descriptor | None = None
        # counters (diagnostics and tests)
        self.frames_out = 0
        self.frames_dropped = 0
        self.stalls = 0  # gaps given up on after the bound
        self.late_packets = 0
        self.resumes = 0
        self.nack_retries = 0  # packets asked for again
        self.layer_skips = 0  # gaps given up on that cost a temporal layer, not a keyframe
        self.keyframe_retries = 0  # keyframes asked for again: none had begun to arrive

    # -- the receiver's contract

    def add(self, packet: Any) -> tuple[bool, Any]:
        now = self._clock()
        ext = self._extend(packet.sequence_number)
        # silence, and packets were lost meanwhile (a quiet screen share loses none)
        resumed = (
            self._last_arrival is not None
            and now - self._last_arrival > RESUME_AFTER_S
            and ext > self._highest + 1
        )
        self._last_arrival = now
        if self._next is None or resumed:
            if resumed:
                self.resumes += 1
            self._restart(ext, need_keyframe=resumed, urgent=True)
        elif ext < self._next:
            if self._next - ext < _MAX_MISORDER:
                self.late_packets += 1  # already handed over or given up on
                return False, self._drain(now)
            self._restart(ext, need_keyframe=True, urgent=False)  # a new sequence
        elif ext in self._packets:
            return False, self._drain(now)
        self._packets[ext] = packet
        self._note_gaps(ext, now)
        self._retry_nacks(packet.ssrc, now)
        self._highest = max(self._highest, ext)
        if packet.marker:
            self._last_marker = max(self._last_marker, ext)
        assert self._next is not None
        if ext - self._next >= _REASSEMBLY_CAPACITY:
            self._give_up(now)  # far more held than any bound allows: skip at once
        frame = self._drain(now)
        if self.waiting_keyframe:
            self._retry_keyframe(now)
        return False, frame

    @property
    def capacity(self) -> int:
        return _REASSEMBLY_CAPACITY

    # -- internals

    def _note_gaps(self, ext: int, now: float) -> None:
        """Learn how long retransmissions take here: a wait shorter than that drops frames
        that were about to complete (the round trip is unknown while a publisher subscribes to
        nobody, and a retransmission can queue behind a keyframe on a slow uplink)."""
        if ext > self._highest + 1:
            if ext - self._highest <= _MAX_TRACKED_GAP:
                for missing in range(self._highest + 1, ext):
                    self._gaps[missing] = (now, now)  # aiortc's receiver asks right away
        elif ext < self._highest:
            gap = self._gaps.pop(ext, None)
            if gap is not None:
                self._recovery_s.append(now - gap[0])

    def _retry_nacks(self, ssrc: int, now: float) -> None:
        """Ask again for the packets still missing whose last request is a round trip old."""
        if self._send_nack is None or not self._gaps:
            return
        retry = max(NACK_RETRY_MIN_S, NACK_RETRY_RTTS * self._rtt())
        due = [ext for ext, (_, asked) in self._gaps.items() if now - asked >= retry]
        if not due:
            return
        for ext in due:
            self._gaps[ext] = (self._gaps[ext][0], now)
        self.nack_retries += len(due)
        self._send_nack(ssrc, sorted(ext & 0xFFFF for ext in due))

    def wait_s(self) -> float:
        """The current bound: `max_wait_s()`, or more if retransmissions were seen to take
        longer (with a margin), never above LOSS_WAIT_MAX_S."""
        learned = 1.25 * max(self._recovery_s, default=0.0)
        return min(LOSS_WAIT_MAX_S, max(self._max_wait_s(), learned))

    def _extend(self, seq: int) -> int:
        """RTP sequence number -> monotonic extended number (nearest to the highest seen)."""
        if self._next is None:
            return seq
        delta = (seq - self._highest) & 0xFFFF
        return self._highest + delta if delta < 0x8000 else self._highest - (0x10000 - delta)

    def _restart(self, ext: int, *, need_keyframe: bool, urgent: bool) -> None:
        dropped_packets = bool(self._packets)
        self._packets.clear()
        self._next = ext
        self._highest = ext
        self._last_marker = -1
        self._before_next = None
        self._blocked_since = None
        self._last = None
        self.layer_limit = None
        self._gaps.clear()
        self._stop_asking_before_next()
        if need_keyframe:
            if dropped_packets:
                self.frames_dropped += 1
            self._want_keyframe(urgent)

    def _stop_asking_before_next(self) -> None:
        """Retransmissions of packets given up on would only crowd the uplink: stop NACKing."""
        missing = self._nack_missing
        if missing and self._next is not None:
            for seq in [s for s in missing if self._extend(s) < self._next]:
                missing.discard(seq)

    def _rtt(self) -> float:
        """The round trip (`rtt_s()`), or DEFAULT_RTT_S before one is measured."""
        rtt = self._rtt_s()
        return DEFAULT_RTT_S if rtt is None else rtt

    def _want_keyframe(self, urgent: bool) -> None:
        self.waiting_keyframe = True
        self._keyframe_retry_at = self._clock() + self.keyframe_retry_s()
        if self._on_keyframe_needed is not None:
            self._on_keyframe_needed(urgent)

    def keyframe_retry_s(self) -> float:
        """How long an awaited keyframe may take to begin arriving before it is asked for
        again."""
        return max(KEYFRAME_RETRY_MIN_S, KEYFRAME_RETRY_RTTS * self._rtt() + KEYFRAME_RETRY_SLACK_S)

    def _retry_keyframe(self, now: float) -> None:
        """Ask again for the awaited keyframe if none has begun to arrive in time."""
        retry_at = self._keyframe_retry_at
        if retry_at is None or now < retry_at:
            return
        if self._next is not None and self._frame_start_after(self._next - 1, keyframe=True):
            return  # on its way (a packet of it may still be missing)
        self.keyframe_retries += 1
        self._want_keyframe(False)

    def _starts_frame(self, ext: int) -> bool | None:
        """Whether the packet at `ext` begins a frame; None if that cannot be told."""
        packet = self._packets[ext]
        before = self._before_next if ext == self._next else self._packets.get(ext - 1)
        if before is not None:
            return bool(before.marker or before.timestamp != packet.timestamp)
        if self.codec == "vp8":
            return vp8_starts_frame(packet.payload)
        return None

    def _starts_keyframe(self, ext: int) -> bool:
        packet = self._packets[ext]
        if self.codec == "h264":
            return self._starts_frame(ext) is not False and h264_starts_keyframe(packet.payload)
        return bool(self._starts_frame(ext)) and is_keyframe(self.codec, packet._data)

    def _frame_at_next(self) -> tuple[int | None, int]:
        """(last seq of the complete frame at `_next` or None, first missing seq from `_next`)."""
        assert self._next is not None
        ext = self._next
        packet = self._packets.get(ext)
        if packet is None:
            return None, ext
        timestamp = packet.timestamp
        while True:
            if packet.marker:
                return ext, ext + 1
            following = self._packets.get(ext + 1)
            if following is None:
                return None, ext + 1
            if following.timestamp != timestamp:
                return ext, ext + 1  # the marked packet was lost; the next frame began
            ext += 1
            packet = following

    def _advance(self, to: int) -> None:
        """Forget every packet before `to`."""
        assert self._next is not None
        if to - self._next > len(self._packets):
            for ext in [e for e in self._packets if e < to]:
                del self._packets[ext]
        else:
            for ext in range(self._next, to):
                self._packets.pop(ext, None)
        self._before_next = self._packets.get(to - 1)
        self._next = to
        self._blocked_since = None
        if self._gaps:
            self._gaps = {e: times for e, times in self._gaps.items() if e >= to}

    def _frame_start_after(self, after: int, *, keyframe: bool) -> int | None:
        """The first known frame start (keyframe start) after `after`."""
        for ext in sorted(e for e in self._packets if e > after):
            if self._starts_keyframe(ext) if keyframe else self._starts_frame(ext):
                return ext
        return None

    def _skip_to_frame(self, after: int, *, keyframe: bool) -> bool:
        """Drop everything before the first known frame start (keyframe start) after `after`."""
        start = self._frame_start_after(after, keyframe=keyframe)
        if start is not None:
            self._advance(start)
        return start is not None

    def _lowest_layer_before(self, start: int, head: Vp8Descriptor) -> int | None:
        """The lowest VP8 temporal layer among the frames between the last one out and the frame
        beginning at `start`, whose descriptor is `head` (counted by PictureID), or None if that
        cannot be told.

        A frame with an arrived packet gives its TID. For frames of which no packet arrived,
        TL0PICIDX counts the base-layer frames in between (the frame at `start` carries the
        index of the last base frame up to it): if the known frames account for all of them,
        the unknown ones are of layer 1 or above, and 1 is assumed."""
        before = self._last
        if before is None or before.picture is None or head.picture is None or head.layer is None:
            return None
        last, first, first_layer = before.picture, head.picture, head.layer
        if first[1] != last[1]:
            return None
        modulus = last[1]
        between = (first[0] - last[0] - 1) % modulus
        if not 0 < between <= _MAX_LOST_FRAMES:
            return None
        tids: dict[int, int] = {}
        assert self._next is not None
        for ext in range(self._next, start):
            packet = self._packets.get(ext)
            if packet is None:
                continue
            descriptor = vp8_descriptor(packet.payload)
            if descriptor.picture is None or descriptor.layer is None:
                return None
            tids[descriptor.picture[0]] = descriptor.layer.tid
        known = [tids[p] for s in range(1, between + 1) if (p := (last[0] + s) % modulus) in tids]
        if len(known) == between:
            return min(known)
        tl0, last_tl0 = head.tl0, before.tl0
        if tl0 is None or last_tl0 is None:
            return None
        base_frames = (tl0 - last_tl0) % 256 - (1 if first_layer.tid == 0 else 0)
        if base_frames != known.count(0):
            return 0 if base_frames > known.count(0) else None
        return min([*known, 1])

    def _give_up(self, now: float) -> None:
        """Drop the blocked frame(s); wait for a keyframe unless they were all of temporal
        layers above the base (then drop from their layer up, until a layer-sync frame)."""
        assert self._next is not None
        self.stalls += 1
        self.frames_dropped += 1
        _, missing = self._frame_at_next()
        start = self._frame_start_after(missing, keyframe=False)
        head = lowest = None
        if start is not None and self.codec == "vp8":
            head = vp8_descriptor(self._packets[start].payload)
            lowest = self._lowest_layer_before(start, head)
        self._advance(self._highest + 1 if start is None else start)
        self._stop_asking_before_next()
        if lowest and not self.waiting_keyframe:
            assert head is not None and head.picture is not None and head.layer is not None
            self.layer_skips += 1
            # as if the dropped frames had left: the one before `start`
            picture, modulus = head.picture
            tl0 = None if head.tl0 is None else (head.tl0 - (head.layer.tid == 0)) % 256
            self._last = Vp8Descriptor(((picture - 1) % modulus, modulus), tl0, None)
            limit = lowest - 1
            self.layer_limit = limit if self.layer_limit is None else min(limit, self.layer_limit)
            return
        self._want_keyframe(False)  # again if the awaited keyframe was the frame lost

    def _drain(self, now: float) -> Any:
        """The next frame to hand over, if any (one per call: the receiver takes one per packet;
        frames still complete here leave with the following packets)."""
        while self._packets:
            assert self._next is not None
            end, missing = self._frame_at_next()
            if end is not None:
                packets = [self._packets[e] for e in range(self._next, end + 1)]
                self._advance(end + 1)
                data = b"".join(p._data for p in packets)
                layer = None
                if self.codec == "vp8":  # its descriptor, from the frame's first packet
                    self._last = vp8_descriptor(packets[0].payload)
                    layer = self._last.layer
                keyframe = is_keyframe(self.codec, data)
                if self.waiting_keyframe and not keyframe:
                    self.frames_dropped += 1
                    continue
                if keyframe:
                    self.layer_limit = None
                elif self._above_layer_limit(layer):
                    self.frames_dropped += 1
                    continue
                self.waiting_keyframe = False
                self.frames_out += 1
                frame = aiortc.jitterbuffer.JitterFrame(data=data, timestamp=packets[0].timestamp)
                if self.codec == "vp8":
                    frame.layer = layer  # type: ignore[attr-defined]
                return frame
            # waiting for a keyframe, the frame at the origin is of no use: jump to one that began
            if (
                self.waiting_keyframe
                and not (self._next in self._packets and self._starts_keyframe(self._next))
                and self._skip_to_frame(self._next, keyframe=True)
            ):
                self.frames_dropped += 1
                self._stop_asking_before_next()
                continue
            if missing >= self._last_marker:
                self._blocked_since = None  # the frame is still arriving: no loss yet
                return None
            if self._blocked_since is None:
                self._blocked_since = now
            # a keyframe waits as long as allowed: giving it up costs another request and
            # another keyframe, which on a congested uplink loses packets again
            keyframe = self._next in self._packets and self._starts_keyframe(self._next)
            if now - self._blocked_since < (LOSS_WAIT_MAX_S if keyframe else self.wait_s()):
                return None
            self._give_up(now)
        return None

    def _above_layer_limit(self, layer: TemporalLayer | None) -> bool:
        """Whether a frame of `layer` is dropped for `layer_limit`; a layer-sync frame of the
        next layer up passes and raises the limit to its layer."""
        limit = self.layer_limit
        if limit is None or layer is None or layer.tid <= limit:
            return False
        if layer.sync and layer.tid == limit + 1:
            self.layer_limit = layer.tid
            return False
        return True


def loss_tolerant_video(
    receiver: Any,
    codec: str,
    *,
    on_keyframe_needed: Callable[[bool], None],
    max_wait_s: Callable[[], float] | None = None,
    rtt_s: Callable[[], float | None] | None = None,
) -> LossTolerantVideo:
    """Give a passthrough video receiver a `LossTolerantVideo` (before its first packet); its
    repeated NACKs go out through the receiver's `_send_rtcp_nack(media_ssrc, lost)`."""
    nack = receiver._RTCRtpReceiver__nack_generator
    pending: set[asyncio.Task[None]] = set()

    def send_nack(ssrc: int, seqs: list[int]) -> None:
        task = asyncio.ensure_future(receiver._send_rtcp_nack(ssrc, seqs))
        pending.add(task)
        task.add_done_callback(pending.discard)

    buffer = LossTolerantVideo(
        codec,
        on_keyframe_needed=on_keyframe_needed,
        max_wait_s=max_wait_s,
        nack_missing=nack.missing if nack is not None else None,
        send_nack=send_nack if nack is not None else None,
        rtt_s=rtt_s,
    )
    receiver._RTCRtpReceiver__jitter_buffer = buffer
    return buffer


def round_trip_time_s(pc: Any) -> float | None:
    """The smoothed round trip aiortc measured from RTCP receiver reports on any of `pc`'s
    senders (the same path as its receivers under BUNDLE); None before the first report."""
    rtts = [
        rtt
        for sender in pc.getSenders()
        if (rtt := getattr(sender, "_RTCRtpSender__rtt", None)) is not None
    ]
    return max(rtts) if rtts else None


#: No RTCP from a subscriber for this long, then some: its link was down (receivers report
#: every 0.5-1.5 s in aiortc, about every second in Chrome).
LINK_SILENT_S = 2.5


def on_link_back(
    sender: Any,
    callback: Callable[[], None],
    *,
    silent_s: float = LINK_SILENT_S,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Call `callback` when RTCP about `sender`'s stream arrives again after `silent_s` without
    any: the subscriber's link returned (and its decoder lost whatever was sent meanwhile)."""
    original = sender._handle_rtcp_packet
    last: list[float] = []

    def handle(packet: Any) -> Any:  # returns original's coroutine
        now = clock()
        if last and now - last[0] > silent_s:
            callback()
        last[:] = [now]
        return original(packet)

    sender._handle_rtcp_packet = handle
