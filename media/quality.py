"""A participant's connection quality over a session, for the session record (issue #16).

No aiortc here. The SFU's room loop (`media.congestion.evaluate`, every
`BandwidthSettings.interval_s`) samples each connected subscriber: the bandwidth its browser
estimates (REMB), the loss it reports on the video and audio it receives, and whether its
video is paused for its network. When the participant's media ends the SFU emits the summary
(`media.interfaces.PeerQuality`); signaling journals it and the sessions service keeps it on
the participant's row, where the session record shows it in words.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Grade = Literal["good", "fair", "poor"]

#: Below this median estimate (kbit/s) video is not watchable; audio still is.
POOR_KBPS = 150
#: Below this median estimate (kbit/s) video is degraded.
FAIR_KBPS = 500
#: Mean loss above these fractions makes the link fair / poor.
FAIR_LOSS = 0.02
POOR_LOSS = 0.08
#: Share of the time the video was paused above which the link is poor / fair.
POOR_PAUSED = 0.25
FAIR_PAUSED = 0.0


@dataclass(frozen=True, slots=True)
class LinkQuality:
    """What the participant's downlink was like while connected (JSON-ready)."""

    seconds: float
    median_kbps: int | None
    min_kbps: int | None
    loss_pct: float | None
    max_loss_pct: float | None
    video_paused_s: float
    grade: Grade

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def grade_of(median_kbps: int | None, loss: float | None, paused_share: float) -> Grade:
    """Poor if any of estimate, loss or pauses is poor; fair if any is fair; else good. An
    unknown estimate or loss (an old browser sends no REMB) does not count against the link."""
    if (
        (median_kbps is not None and median_kbps < POOR_KBPS)
        or (loss is not None and loss > POOR_LOSS)
        or paused_share > POOR_PAUSED
    ):
        return "poor"
    if (
        (median_kbps is not None and median_kbps < FAIR_KBPS)
        or (loss is not None and loss > FAIR_LOSS)
        or paused_share > FAIR_PAUSED
    ):
        return "fair"
    return "good"


@dataclass(slots=True)
class QualityMeter:
    """One subscriber's samples; `sample` is called once per room-loop round."""

    seconds: float = 0.0
    paused_s: float = 0.0
    estimates_bps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)

    def sample(
        self, *, interval_s: float, estimate_bps: int | None, loss: float | None, paused: bool
    ) -> None:
        self.seconds += interval_s
        if paused:
            self.paused_s += interval_s
        if estimate_bps is not None:
            self.estimates_bps.append(estimate_bps)
        if loss is not None:
            self.losses.append(loss)

    def summary(self) -> LinkQuality | None:
        """None when the participant was never sampled (left before media connected)."""
        if self.seconds <= 0:
            return None
        kbps = [round(b / 1000) for b in self.estimates_bps]
        median = round(statistics.median(kbps)) if kbps else None
        loss = statistics.fmean(self.losses) if self.losses else None
        return LinkQuality(
            seconds=round(self.seconds, 1),
            median_kbps=median,
            min_kbps=min(kbps) if kbps else None,
            loss_pct=round(loss * 100, 1) if loss is not None else None,
            max_loss_pct=round(max(self.losses) * 100, 1) if self.losses else None,
            video_paused_s=round(self.paused_s, 1),
            grade=grade_of(median, loss, self.paused_s / self.seconds),
        )


UpstreamGrade = Literal["good", "fair", "poor", "lost"]

#: No packet from a publisher for this long (while it publishes) makes its upstream `lost`.
UPSTREAM_STALL_S = 1.5


@dataclass(slots=True)
class UpstreamMeter:
    """What the server receives from one publisher (issue #18 item 8), sampled by the SFU's
    room loop: cumulative RTP packets expected (from sequence numbers) and received (NACK/RTX
    repairs count as received) over all its tracks. The loss of an interval is the gaps not
    recovered / expected in it, graded with `FAIR_LOSS` / `POOR_LOSS`; no packet for
    `UPSTREAM_STALL_S` is `lost`. `sample` returns the new grade only when it changes."""

    grade: UpstreamGrade | None = None
    expected: int = 0
    received: int = 0
    last_packet_at: float | None = None

    def sample(self, now: float, expected: int, received: int) -> UpstreamGrade | None:
        d_expected = expected - self.expected
        d_received = received - self.received
        if self.last_packet_at is None or d_received > 0:
            self.last_packet_at = now
        self.expected, self.received = expected, received
        grade: UpstreamGrade
        if now - self.last_packet_at > UPSTREAM_STALL_S:
            grade = "lost"
        elif d_expected <= 0:
            grade = self.grade if self.grade not in (None, "lost") else "good"
        else:
            loss = max(0, d_expected - d_received) / d_expected
            grade = "poor" if loss > POOR_LOSS else "fair" if loss > FAIR_LOSS else "good"
        if grade == self.grade:
            return None
        self.grade = grade
        return grade
