"""What each subscriber's link can take, and when its video pauses (audio first, issue #18).

No aiortc here: `media.adapter.on_congestion_feedback` reads the RTCP a subscriber sends about
the server's senders and calls `BandwidthEstimator.on_remb` / `on_report`; the SFU's room loop
asks `VideoPausePolicy.update` with the estimate, the loss and the bitrate the subscriber is
sent, and pauses or resumes that subscriber's video (never its audio).

    subscriber ─RTCP REMB / RR─► adapter ─► BandwidthEstimator ─┐
    publishers' measured bitrates (RateMeter) ──────────────────┴─► VideoPausePolicy ─► pause/resume
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class BandwidthSettings:
    """Thresholds of the audio-first policy (`SfuMediaNode(bandwidth=...)`).

    A subscriber is *weak* when its estimate is below `pause_below_ratio` × what it is sent
    (video it receives plus audio), or when the loss it reports on its video is above
    `pause_loss`. A low estimate that is still climbing (`BandwidthEstimator.rising`) is a
    receiver ramping up, not a weak link, and does not count. Weak for `pause_after_s` → its
    video pauses. It resumes after at least the pause's length (`min_pause_s`, doubled for each
    pause that follows a resume within `backoff_reset_s`, up to `max_pause_s`) once its loss has
    been at most `resume_loss` for `resume_after_s`. The estimate is not asked while paused: a
    receiver's estimate follows what it receives (Chromium's falls to the audio's rate and climbs
    only a few per cent a second), so it can never show room for video that is not sent; a
    resume is a probe, and a pause soon after lengthens the next one, so a link that cannot carry
    video does not flap.
    """

    pause_below_ratio: float = 0.85
    resume_above_ratio: float = 1.2
    pause_loss: float = 0.10
    resume_loss: float = 0.10
    #: Loss above `pause_loss` is congestion only while the estimate is below what the
    #: subscriber is sent (a link that loses at random loses whatever it carries, and its
    #: receiver's delay-based estimate stays up); above `heavy_loss` it counts regardless.
    heavy_loss: float = 0.25
    pause_after_s: float = 2.0
    resume_after_s: float = 2.0
    min_pause_s: float = 5.0
    max_pause_s: float = 40.0
    backoff_reset_s: float = 30.0
    #: RTCP older than this no longer counts (receivers report about every second).
    feedback_fresh_s: float = 3.0
    #: Estimates in a subscriber's first seconds are ignored (receivers start low and ramp up),
    #: unless the link is overrun already (`overrun`): the estimate is low (below
    #: `pause_below_ratio` × what the subscriber is sent) and the round trip is at least
    #: `queue_rtt_s` (a queue filling on its path).
    warmup_s: float = 5.0
    queue_rtt_s: float = 0.25
    #: A subscriber's estimate is acted on (layers, pause, caps) only when its round trip is at
    #: least this, or not known yet (`credible`): below it there is no queue on its path.
    credible_rtt_s: float = 0.05
    #: Loss reports are smoothed: new = old + alpha × (report - old).
    loss_alpha: float = 0.5
    #: Loss from packet counts needs this many packets expected in the window.
    loss_min_packets: int = 30
    #: Bitrate assumed for an audio stream not measured yet.
    audio_bps: int = 40_000
    #: How often the SFU evaluates every subscriber.
    interval_s: float = 0.5
    #: `rising`: the estimate grew by more than `rising_ratio` over at least `rising_over_s`.
    rising_over_s: float = 0.8
    rising_ratio: float = 1.01
    #: `PublishCapPolicy`: cap a publisher's camera to what its weakest subscriber can take.
    cap_publishers: bool = True
    #: The share of a subscriber's estimate its video may fill (the rest: audio, repairs).
    cap_headroom: float = 0.8
    #: A subscriber whose share per video is below this does not cap anyone (its temporal
    #: layers and the pause serve it); no cap is lower.
    cap_floor_bps: int = 100_000
    #: What the browser client sends at most anyway (web/static/media.js): no cap above it.
    cap_ceiling_bps: int = 600_000
    cap_down_after_s: float = 2.0
    cap_up_after_s: float = 4.0
    #: Changes smaller than this fraction of the current cap are not sent.
    cap_step: float = 0.1
    #: After a subscriber's layer changed or a publisher it receives was capped, it does not
    #: pause for this long (its loss window still holds the time before; an encoder takes a
    #: moment to follow a new cap).
    settle_s: float = 4.0
    #: Audio to a subscriber is sent as RED (RFC 2198) when its browser negotiated it: each
    #: packet repeats the frame before it while the subscriber's audio loss is at least
    #: `red_loss` and for `red_hold_s` after, the two before it at `red_loss_two` and more.
    red_loss: float = 0.01
    red_loss_two: float = 0.10
    red_hold_s: float = 10.0

    def __post_init__(self) -> None:
        if self.resume_above_ratio < self.pause_below_ratio or not (
            self.resume_loss <= self.pause_loss <= self.heavy_loss
        ):
            raise ValueError("resume thresholds must be at least as strict as pause thresholds")
        if self.max_pause_s < self.min_pause_s:
            raise ValueError("max_pause_s must be at least min_pause_s")


class BandwidthEstimator:
    """One subscriber's congestion feedback: REMB (bits per second over a set of SSRCs) and the
    fraction lost of each stream from its receiver reports."""

    def __init__(self, settings: BandwidthSettings | None = None, clock: Clock = time.monotonic):
        self.settings = settings or BandwidthSettings()
        self.clock = clock
        self._remb: dict[frozenset[int], tuple[int, float]] = {}  # ssrcs -> (bps, at)
        self._loss: dict[int, tuple[float, float, str]] = {}  # ssrc -> (smoothed, at, kind)
        self._history: deque[tuple[float, int]] = deque()  # (at, estimate) after each REMB
        # ssrc -> (at, cumulative lost, extended highest sequence, kind) of recent reports
        self._counts: dict[int, deque[tuple[float, int, int, str]]] = {}
        self.rembs = 0
        self.reports = 0
        self._link_back_at = float("-inf")
        # ssrc -> after `link_back`: None until its first report, then that report's highest
        # sequence, until a report passes it (`on_report`)
        self._outage_seq: dict[int, int | None] = {}
        #: the smoothed round trip to the subscriber (`on_rtt`), None before the first
        self.rtt_s: float | None = None

    def on_rtt(self, rtt_s: float | None) -> None:
        """The round trip measured from the subscriber's receiver reports (the SFU's loop
        passes the adapter's figure before each evaluation)."""
        self.rtt_s = rtt_s

    def link_back(self) -> None:
        """The subscriber's link was down and is back (its RTCP resumed after a silence). Each
        stream's packet counts start again from its first report that has seen a packet sent
        after the outage (`on_report`)."""
        self._link_back_at = self.clock()
        for ssrc, counts in self._counts.items():
            if counts:  # a second call for the same outage finds them cleared
                self._outage_seq[ssrc] = None
                counts.clear()

    def on_remb(self, bitrate_bps: int, ssrcs: Iterable[int]) -> None:
        key = frozenset(ssrcs)
        if key:
            now = self.clock()
            self._remb[key] = (bitrate_bps, now)
            self.rembs += 1
            estimate = self.estimate_bps()
            if estimate is not None:
                self._history.append((now, estimate))
            while self._history and now - self._history[0][0] > self.settings.feedback_fresh_s:
                self._history.popleft()

    def _fresh_history(self) -> bool:
        return bool(self._history) and (
            self.clock() - self._history[-1][0] <= self.settings.feedback_fresh_s
        )

    def rising(self) -> bool:
        """Whether the fresh estimate is still climbing: above the last one at least
        `rising_over_s` older by more than `rising_ratio` (a receiver's estimate ramps up a few per
        cent a second after a start or a resume; a weak link's stays flat or falls)."""
        if not self._fresh_history():
            return False
        s = self.settings
        newest_at, newest = self._history[-1]
        older = [e for at, e in self._history if newest_at - at >= s.rising_over_s]
        return bool(older) and newest > older[-1] * s.rising_ratio

    def settled(self) -> bool:
        """Whether the fresh estimate has history enough to judge (`rising_over_s`) and is
        not climbing."""
        if not self._fresh_history():
            return False
        span = self._history[-1][0] - self._history[0][0]
        return span >= self.settings.rising_over_s and not self.rising()

    def on_report(
        self,
        ssrc: int,
        fraction_lost: int,
        kind: str,
        packets_lost: int | None = None,
        highest_seq: int | None = None,
    ) -> None:
        """`fraction_lost` as in RTCP: lost packets since the last report, × 256; with the
        report's cumulative `packets_lost` and extended `highest_seq`, `loss` counts packets.

        After `link_back()` the outage is in a stream's reports up to the first whose
        `highest_seq` is past that of the first report after it: the receiver's report sent as
        its link returned ends where the outage began (it has received nothing since), the
        next one spans it. What they say was lost (near 100 %) is the outage, not congestion:
        neither fraction is taken, and the stream's counts start again from the second.
        Measured on "drop5", counted from the first: the loss read 96-98 % falling to 58-67 % over
        2.5 s, which took a subscriber on a clean link to the base layer and capped both
        cameras, and its layers took 14 s to climb back. (When the first report spans the
        outage already, one report more is not taken.) Without counts, the first report after
        `link_back()` is the one not taken."""
        now = self.clock()
        previous = self._loss.get(ssrc)
        outage = previous is not None and previous[1] < self._link_back_at
        if highest_seq is not None and ssrc in self._outage_seq:
            outage = True
            first = self._outage_seq[ssrc]
            if first is not None and highest_seq > first:
                del self._outage_seq[ssrc]  # this one spans the outage: the counts restart
            else:
                self._outage_seq[ssrc] = highest_seq if first is None else first
                packets_lost = None  # it ends where the outage began: no count to start from
        if packets_lost is not None and highest_seq is not None:
            counts = self._counts.setdefault(ssrc, deque())
            counts.append((now, packets_lost, highest_seq, kind))
            while counts and now - counts[0][0] > self.settings.feedback_fresh_s:
                counts.popleft()
        self.reports += 1
        if outage:
            self._loss[ssrc] = (0.0, now, kind)
            return
        lost = min(max(fraction_lost, 0), 255) / 256
        if previous is not None and now - previous[1] <= self.settings.feedback_fresh_s:
            lost = previous[0] + self.settings.loss_alpha * (lost - previous[0])
        self._loss[ssrc] = (lost, now, kind)

    def estimate_bps(self, since: float | None = None) -> int | None:
        """The subscriber's estimate: the sum of its fresh REMBs over disjoint SSRC sets (Chrome
        sends one for all streams, aiortc one per receiver; the newest wins an overlap); None
        when none is fresh (or none arrived at or after `since`)."""
        now = self.clock()
        oldest = now - self.settings.feedback_fresh_s
        if since is not None:
            oldest = max(oldest, since)
        covered: set[int] = set()
        total = 0
        found = False
        for ssrcs, (bps, at) in sorted(self._remb.items(), key=lambda kv: -kv[1][1]):
            if at < oldest or covered & ssrcs:
                continue
            covered |= ssrcs
            total += bps
            found = True
        return total if found else None

    def loss(self, kind: str | None = "video") -> float | None:
        """The fraction of packets lost over the fresh reports of streams of `kind`, all streams
        together (at least `loss_min_packets` expected); without packet counts, the highest
        smoothed per-report fraction. (Per report and stream, a few dozen packets make 2 %
        random loss read 0 % one second and 7 % the next.)"""
        oldest = self.clock() - self.settings.feedback_fresh_s
        lost = expected = 0
        for counts in self._counts.values():
            window = [c for c in counts if c[0] >= oldest and (kind is None or c[3] == kind)]
            if len(window) >= 2:
                expected += max(0, window[-1][2] - window[0][2])
                lost += max(0, window[-1][1] - window[0][1])
        if expected >= self.settings.loss_min_packets:
            return min(1.0, lost / expected)
        fresh = [
            lost
            for lost, at, k in self._loss.values()
            if at >= oldest and (kind is None or k == kind)
        ]
        return max(fresh) if fresh else None

    def forget(self, ssrc: int) -> None:
        """A stream the subscriber no longer receives (its subscription ended)."""
        self._loss.pop(ssrc, None)
        self._counts.pop(ssrc, None)
        self._outage_seq.pop(ssrc, None)
        for key in [k for k in self._remb if ssrc in k]:
            del self._remb[key]


def credible(s: BandwidthSettings, estimator: BandwidthEstimator) -> bool:
    """Whether this subscriber's estimate may be taken as its link's capacity: its round trip is
    unknown or at least `credible_rtt_s`. If not, the policies weigh what it reports as if no
    estimate had come: loss up to `heavy_loss` on a path without a queue is random
    (`congestion_loss`), and a layer climbs by probing.

    Chromium's delay-based estimate reads the jitter of its own packet arrival as a queue. On a
    machine loaded by three browsers it fell from 1.1 Mbit/s to 37 kbit/s within 7 s with a
    round trip of 2-4 ms throughout ("8 % loss"), and to 134 kbit/s on a clean link; taken as
    the link, it dropped layers, capped the other publishers and paused the video, and the climb
    back took 20 s or more (Chromium lets its estimate exceed what it receives by half at most).
    A link that is full has a queue, and its round trip shows it; one with a short buffer loses
    packets instead, which `congestion_loss` counts with or without this. An earlier rule that
    compared the round trip with the lowest seen discarded right estimates on "4G weak", whose
    round trip sits at 0.24-0.34 s from the start: this threshold is far below any path with a
    queue worth the name."""
    rtt = estimator.rtt_s
    return rtt is None or rtt >= s.credible_rtt_s


def overrun(s: BandwidthSettings, estimator: BandwidthEstimator, sent_bps: float) -> bool:
    """Whether the subscriber's estimate and round trip both say it is sent more than its link
    carries: the estimate below `pause_below_ratio` × `sent_bps` and the round trip at least
    `queue_rtt_s` (a queue filling on its path). Trusted in the warm-up, where an estimate alone
    is not, and whether or not the estimate is still climbing.

    A receiver's estimate alone can mislead: on "4G weak" the browser on a clean link sent one
    1.4 s after its start at a fraction of what it was sent, reading the jitter of another
    participant's weak uplink (in that participant's forwarded video) as its own link's queue;
    and after the decrease of an overrun, Chromium's estimate climbs 1-2 % a second, which reads
    as a receiver still ramping up. The round trip tells them apart: on the overrun link it
    read 0.4 s 2.2 s after the start and 0.86 s at 3.6 s (the link's queue and the uplink's),
    on the clean one 0.001–0.012 s."""
    estimate = estimator.estimate_bps()
    rtt = estimator.rtt_s
    return (
        estimate is not None
        and rtt is not None
        and rtt >= s.queue_rtt_s
        and estimate < s.pause_below_ratio * sent_bps
    )


def congestion_loss(
    s: BandwidthSettings,
    loss: float | None,
    estimate: float | None,
    sent_bps: float,
    climbing: bool = False,
    rtt_s: float | None = None,
) -> bool:
    """Whether `loss` says the subscriber is sent more than its link carries: above
    `heavy_loss`, or above `pause_loss` while its estimate is below `sent_bps` and not
    `climbing` (a receiver ramping up after its start reads below what it is sent on any link).
    Measured on 8 % random loss at 2 Mbit/s: the loss alone read 8–16 %, dropped a subscriber to
    the base layer and paused it, though its link had room.

    With no estimate (None: none yet, or not trusted in the warm-up) the round trip `rtt_s`
    decides: loss is congestion only once the round trip is known and at least `queue_rtt_s`
    (a queue on the path); below it the link drops at random. Chromium's first estimate comes
    3-6 s after the start; on 8 % random loss the loss read 13-18 % before it, with a round trip
    of 4-7 ms, and took a subscriber to the base layer for the rest of a 25 s run in 3 of 9 runs.
    Before the first round trip (1-2.5 s after the start: the first receiver report on a sender
    report of ours) the loss of a few dozen packets read 8-29 % on the same link, and once took
    the subscriber to layer 1 for 7 s (the full run of 2026-12-05 17:57): unknown, the round
    trip is waited for. An overrun shows a long one at once (`overrun`)."""
    if loss is None or loss <= s.pause_loss:
        return False
    if loss > s.heavy_loss:
        return True
    if climbing:
        return False
    if estimate is None:
        return rtt_s is not None and rtt_s >= s.queue_rtt_s
    return estimate < sent_bps


class RateMeter:
    """Bits per second of a growing byte counter, sampled now and then, smoothed."""

    def __init__(self, alpha: float = 0.5) -> None:
        self.alpha = alpha
        self.bps: float | None = None
        self._last: tuple[int, float] | None = None

    def update(self, total_bytes: int, now: float) -> float | None:
        last = self._last
        self._last = (total_bytes, now)
        if last is None or now <= last[1]:
            return self.bps
        sample = (total_bytes - last[0]) * 8 / (now - last[1])
        self.bps = sample if self.bps is None else self.bps + self.alpha * (sample - self.bps)
        return self.bps


class VideoPausePolicy:
    """Pause or resume one subscriber's video, with hysteresis and back-off (see
    `BandwidthSettings`). `update` returns True when video must pause now, False when it must
    resume now, None when nothing changes."""

    def __init__(self, settings: BandwidthSettings | None = None, clock: Clock = time.monotonic):
        self.settings = settings or BandwidthSettings()
        self.clock = clock
        self.created_at = clock()
        self.paused = False
        self.paused_at = 0.0
        self.pause_s = self.settings.min_pause_s
        self.resumed_at: float | None = None
        self.pauses = 0
        self._since: float | None = None  # the condition to change has held since then
        self.reason = ""

    def update(
        self, estimator: BandwidthEstimator, needed_bps: float, *, settling: bool = False
    ) -> bool | None:
        """`settling`: what the subscriber is sent just changed (a layer, a publisher's cap),
        so what it reports still describes the time before: no pause now."""
        s = self.settings
        now = self.clock()
        if not self.paused and settling:
            self._since = None
            return None
        if not self.paused:
            warm = now - self.created_at >= s.warmup_s
            estimate = estimator.estimate_bps() if warm and credible(s, estimator) else None
            loss = estimator.loss("video")
            climbing = estimator.rising()
            low = (
                estimate is not None
                and needed_bps > 0
                and estimate < s.pause_below_ratio * needed_bps
                and not climbing
            )
            lossy = congestion_loss(s, loss, estimate, needed_bps, climbing, estimator.rtt_s)
            if not (low or lossy):
                self._since = None
                return None
            if self._since is None:
                self._since = now
            if now - self._since < s.pause_after_s:
                return None
            recent = self.resumed_at is not None and now - self.resumed_at < s.backoff_reset_s
            self.pause_s = min(self.pause_s * 2, s.max_pause_s) if recent else s.min_pause_s
            self.paused, self.paused_at, self._since = True, now, None
            self.pauses += 1
            self.reason = (
                f"estimate {estimate} bps < {needed_bps:.0f} bps needed"
                if low
                else f"loss {loss:.2f}"
            )
            return True
        # paused: the estimate follows the audio alone now, so only the loss says anything
        loss = estimator.loss(None)  # audio keeps flowing and being reported
        if loss is not None and loss > s.resume_loss:
            self._since = None
            return None
        if self._since is None:
            self._since = now
        if now - self.paused_at < self.pause_s or now - self._since < s.resume_after_s:
            return None
        self.paused, self.resumed_at, self._since = False, now, None
        self.reason = ""
        return False


class AudioRedundancy:
    """How many earlier audio frames each packet to one subscriber repeats (0, 1 or 2)."""

    __slots__ = ("frames", "lossy_at")

    def __init__(self) -> None:
        self.frames = 0
        self.lossy_at: float | None = None

    def update(self, loss: float | None, settings: BandwidthSettings, now: float) -> int:
        """Up at once when the loss asks for more; down only after `red_hold_s` without."""
        wanted = 0
        if loss is not None and loss >= settings.red_loss:
            wanted = 2 if loss >= settings.red_loss_two else 1
        if wanted >= self.frames:
            self.frames = wanted
            self.lossy_at = now if wanted else self.lossy_at
        elif self.lossy_at is None or now - self.lossy_at >= settings.red_hold_s:
            self.frames = wanted
            self.lossy_at = now if wanted else None
        return self.frames


class PublishCapPolicy:
    """The highest bitrate one publisher's camera should send (None: no cap).

    Temporal layers thin a stream by frame rate: a subscriber on a weak link gets 4 frames a
    second of the base layer. When the weakest subscriber could take every frame at a lower
    bitrate, asking the publisher's encoder for that bitrate (it lowers quality, then
    resolution, never the frame rate) serves it better, without re-encoding. `update` is given
    the lowest per-video share over the publisher's subscribers (`media.congestion.
    update_video_share`), ignoring any below `cap_floor_bps`. Down after `cap_down_after_s`, up
    after `cap_up_after_s`, in steps of at least `cap_step`. Returns True when `cap` changed.
    """

    def __init__(self, settings: BandwidthSettings | None = None, clock: Clock = time.monotonic):
        self.settings = settings or BandwidthSettings()
        self.clock = clock
        self.cap: int | None = None
        self.changed_at: float | None = None
        self.changes = 0
        self._down_since: float | None = None
        self._up_since: float | None = None

    def lowers_to(self, bps: float) -> bool:
        """Whether `bps` is more than one step (`cap_step`) below the cap (no cap: the
        ceiling), so that `update` would lower the cap to it."""
        current = self.cap if self.cap is not None else self.settings.cap_ceiling_bps
        return bps < current * (1 - self.settings.cap_step)

    def update(self, share_bps: float | None) -> bool:
        s = self.settings
        now = self.clock()
        want: int | None = None
        if share_bps is not None and share_bps < s.cap_ceiling_bps:
            want = max(s.cap_floor_bps, int(share_bps) // 10_000 * 10_000)
        current = self.cap if self.cap is not None else s.cap_ceiling_bps
        target = want if want is not None else s.cap_ceiling_bps
        if self.lowers_to(target):
            self._up_since = None
            if self._down_since is None:
                self._down_since = now
            if now - self._down_since < s.cap_down_after_s:
                return False
        elif target > current * (1 + s.cap_step):
            self._down_since = None
            if self._up_since is None:
                self._up_since = now
            if now - self._up_since < s.cap_up_after_s:
                return False
        else:
            self._down_since = self._up_since = None
            return False
        self.cap, self.changed_at, self._down_since, self._up_since = want, now, None, None
        self.changes += 1
        return True


#: VP8 L1T3: temporal layers 0 (base), 1, 2.
MAX_LAYER = 2


@dataclass(frozen=True, slots=True)
class LayerSettings:
    """Thresholds of the temporal-layer step before the video pause (`LayerPolicy`).

    `needed[L]` is what the subscriber is sent with layers 0..L of every publisher's video (plus
    audio). *Weak* as for the pause (`BandwidthSettings.pause_below_ratio` of `needed` at the
    current layer, or video loss above `pause_loss`) for `down_after_s` → down to the highest
    layer whose `needed` fits the estimate (or one layer down on loss alone), at once several if
    needed; at once, without `down_after_s`, when the link is overrun in the subscriber's
    warm-up (`overrun`). Up when, for `up_after_s`, the loss is at most `up_loss` (or random) and
    an estimate received since the last change is either ≥ `up_above_ratio` × `needed` of the
    next layer (then up to the highest layer it covers so, several at once), or ≥
    `resume_above_ratio` × `needed` of the current one after holding it `hold_s` (a probe, one
    layer: a receiver's estimate rarely grows far beyond what it receives). A down soon after
    an up (within `backoff_reset_s`) doubles `hold_s`, up to `max_hold_s`.
    """

    down_after_s: float = 1.0
    up_after_s: float = 2.0
    #: Video loss up to this does not stop a climb: a mobile link loses a few per cent at random
    #: whatever it carries (NACK/RTX repairs it); congestion shows as loss above `pause_loss`.
    up_loss: float = 0.05
    up_above_ratio: float = 1.05
    hold_s: float = 5.0
    max_hold_s: float = 40.0


class LayerPolicy:
    """One subscriber's highest VP8 temporal layer (0..MAX_LAYER), with hysteresis. `update`
    returns the new cap when it changes, else None. While the subscriber's video is paused the
    SFU calls `to_base()`: a resume starts from the base layer and climbs (layer-drop → pause →
    resume → layer-up)."""

    def __init__(
        self,
        settings: BandwidthSettings | None = None,
        layers: LayerSettings | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        self.settings = settings or BandwidthSettings()
        self.layers = layers or LayerSettings()
        self.clock = clock
        self.created_at = clock()
        self.layer = MAX_LAYER
        self.changed_at = self.created_at
        self.upped_at: float | None = None
        self.hold_s = self.layers.hold_s
        self.downs = 0
        self._down_since: float | None = None
        self._up_since: float | None = None

    def to_base(self) -> None:
        if self.layer != 0:
            self.layer, self.changed_at = 0, self.clock()
        self._down_since = self._up_since = None

    def effective(self, top: int) -> int:
        """The cap given the highest layer the publishers send."""
        return max(0, min(self.layer, top))

    def update(
        self, estimator: BandwidthEstimator, needed: Sequence[float], floor: int = 0
    ) -> int | None:
        """`needed[L]`: bits/s the subscriber is sent with layers 0..L (len = layers sent).
        `floor`: a low estimate alone drops no lower than this (loss still does): the layer
        the subscriber waits at while its publishers' caps come down to fit it."""
        s, ls = self.settings, self.layers
        now = self.clock()
        top = len(needed) - 1
        if top < 1:
            self._down_since = self._up_since = None
            return None
        current = self.effective(top)
        warm = now - self.created_at >= s.warmup_s
        early = not warm and overrun(s, estimator, needed[current])
        believed = credible(s, estimator)
        estimate = estimator.estimate_bps() if (warm or early) and believed else None
        loss = estimator.loss("video")
        climbing = estimator.rising() and not early  # it climbs after the start's decrease
        low = (
            estimate is not None
            and estimate < s.pause_below_ratio * needed[current]
            and not climbing
        )
        lossy = congestion_loss(s, loss, estimate, needed[current], climbing, estimator.rtt_s)
        if low or lossy:
            self._up_since = None
            if current == 0:
                self._down_since = None
                return None  # the pause policy's turn
            if self._down_since is None:
                self._down_since = now
            if now - self._down_since < ls.down_after_s and not early:
                return None
            target = current - 1
            if low:
                assert estimate is not None
                fits = [lay for lay in range(current) if estimate >= needed[lay]]
                target = min(target, fits[-1] if fits else 0)
                if not lossy:
                    target = max(target, floor)
                    if target >= current:
                        self._down_since = None
                        return None
            recent = self.upped_at is not None and now - self.upped_at < s.backoff_reset_s
            self.hold_s = min(self.hold_s * 2, ls.max_hold_s) if recent else ls.hold_s
            self.layer, self.changed_at, self._down_since = target, now, None
            self.downs += 1
            return target
        self._down_since = None
        if current >= top or self.layer >= MAX_LAYER:
            self._up_since = None
            return None
        # an estimate not `credible` does not hold a climb back: the probe decides
        fresh = estimator.estimate_bps(since=self.changed_at) if believed else None
        # loss up to `heavy_loss` with the estimate at least what it receives is random loss,
        # and so is any up to it on a link without a queue
        random_loss = (
            loss is not None
            and loss <= s.heavy_loss
            and (not believed or (estimate is not None and estimate >= needed[current]))
        )
        good_loss = loss is None or loss <= ls.up_loss or random_loss
        fits_next = fresh is not None and fresh >= ls.up_above_ratio * needed[current + 1]
        probe = now - self.changed_at >= self.hold_s and (
            fresh is None or fresh >= s.resume_above_ratio * needed[current]
        )
        if not (good_loss and (fits_next or probe)):
            self._up_since = None
            return None
        if self._up_since is None:
            self._up_since = now
        if now - self._up_since < ls.up_after_s:
            return None
        target = current + 1  # a probe climbs one layer
        if fits_next:  # straight to the highest layer the estimate covers
            assert fresh is not None
            fits = [lay for lay in range(top + 1) if fresh >= ls.up_above_ratio * needed[lay]]
            target = max(target, *fits)
        self.layer, self.changed_at, self.upped_at, self._up_since = target, now, now, None
        return self.layer
