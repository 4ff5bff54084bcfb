"""The per-subscriber estimate and the audio-first pause/resume policy, on a fake clock."""

from __future__ import annotations

from typing import Any

from media.bandwidth import (
    BandwidthEstimator,
    BandwidthSettings,
    RateMeter,
    VideoPausePolicy,
    congestion_loss,
)

SETTINGS = BandwidthSettings(
    pause_after_s=2.0,
    resume_after_s=2.0,
    min_pause_s=5.0,
    max_pause_s=40.0,
    backoff_reset_s=30.0,
    warmup_s=0.0,
)
NEEDED = 800_000  # bits per second the subscriber is sent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(
    settings: BandwidthSettings = SETTINGS,
) -> tuple[Clock, BandwidthEstimator, VideoPausePolicy]:
    clock = Clock()
    return clock, BandwidthEstimator(settings, clock), VideoPausePolicy(settings, clock)


def run(
    clock: Clock,
    estimator: BandwidthEstimator,
    policy: VideoPausePolicy,
    seconds: float,
    *,
    remb: int | None = None,
    video_loss: int | None = None,
    audio_loss: int | None = None,
    until_change: bool = False,
) -> list[bool]:
    """Feed feedback every 0.5 s for `seconds`; the policy's decisions, in order."""
    decisions = []
    end = clock.now + seconds
    while clock.now < end:
        clock.now += 0.5
        if remb is not None:
            estimator.on_remb(remb, [1, 2])
        if video_loss is not None:
            estimator.on_report(1, video_loss, "video")
        if audio_loss is not None:
            estimator.on_report(3, audio_loss, "audio")
        decision = policy.update(estimator, NEEDED)
        if decision is not None:
            decisions.append(decision)
            if until_change:
                break
    return decisions


def test_estimate_sums_disjoint_rembs_and_the_newest_wins_an_overlap() -> None:
    clock, estimator, _ = make()
    estimator.on_remb(300_000, [1])
    estimator.on_remb(200_000, [2])
    assert estimator.estimate_bps() == 500_000  # aiortc: one REMB per receiver
    clock.now += 1
    estimator.on_remb(900_000, [1, 2])  # Chrome: one REMB for every stream
    assert estimator.estimate_bps() == 900_000
    clock.now += SETTINGS.feedback_fresh_s + 0.1
    assert estimator.estimate_bps() is None  # stale
    estimator.on_remb(100_000, [1])
    assert estimator.estimate_bps(since=clock.now + 1) is None


def test_loss_is_smoothed_per_stream_and_by_kind() -> None:
    clock, estimator, _ = make()
    estimator.on_report(1, 128, "video")  # 50 %
    assert estimator.loss("video") == 0.5
    estimator.on_report(1, 0, "video")
    assert estimator.loss("video") == 0.25
    assert estimator.loss("audio") is None
    estimator.on_report(3, 64, "audio")
    assert estimator.loss(None) == 0.25
    clock.now += SETTINGS.feedback_fresh_s + 0.1
    assert estimator.loss(None) is None
    estimator.forget(1)
    assert estimator.loss("video") is None


def test_loss_counts_packets_over_every_stream_of_a_kind() -> None:
    clock, estimator, _ = make()
    # two video streams, 30 packets a second each, about 2 % lost: per report and stream that
    # reads 0 % or 6.7 % (fraction_lost 0 or 17); counted over the window, 2 of 120 packets
    lost = {1: 0, 2: 0}
    for second in range(1, 4):
        clock.now += 1
        for ssrc in (1, 2):
            now_lost = 1 if (second + ssrc) % 2 else 0
            lost[ssrc] += now_lost
            estimator.on_report(ssrc, 17 * now_lost, "video", lost[ssrc], 30 * second)
    assert estimator.loss("video") == 2 / 120
    assert estimator.loss("audio") is None
    # too few packets counted: the smoothed per-report fraction
    _, few, _ = make()
    few.on_report(1, 64, "video", 0, 10)
    few.on_report(1, 64, "video", 1, 14)
    assert few.loss("video") == 0.25


def test_the_first_report_after_an_outage_is_not_taken_for_loss() -> None:
    clock, estimator, _ = make()
    for second in range(1, 4):
        clock.now += 1
        estimator.on_report(1, 0, "video", 0, 30 * second)
    assert estimator.loss("video") == 0
    clock.now += 5  # the subscriber's link is down: no report
    estimator.link_back()  # its RTCP resumed (adapter.on_link_back, before the report)
    estimator.on_report(1, 255, "video", 150, 240)  # back: it lost the 5 s of the outage
    assert not estimator.loss("video")
    clock.now += 1
    # the counts start again here (one report later than needed: this one could not tell
    # that the one before had spanned the outage already)
    estimator.on_report(1, 9, "video", 151, 270)
    assert not estimator.loss("video")
    clock.now += 1
    estimator.on_report(1, 9, "video", 152, 300)  # then 1 of 30 packets
    assert estimator.loss("video") == 1 / 30
    # a silence without a link-back (an audio-only receiver reports every 5 s) counts as usual
    clock.now += 5
    estimator.on_report(1, 64, "video", 162, 330)
    assert estimator.loss("video") == 0.25


def test_reports_that_end_before_the_outage_do_not_start_the_count() -> None:
    """As measured on "drop5": the receiver's report sent as its link returned still ends
    where the outage began (it had received nothing new), the next spans the outage. Neither is
    loss; the counts start from the second, and loss after it counts as usual."""
    clock, estimator, _ = make()
    for second in range(1, 4):
        clock.now += 1
        estimator.on_report(1, 0, "video", 0, 30 * second)
    clock.now += 5
    estimator.link_back()
    estimator.link_back()  # one call per video sender, for the same outage
    # past the last report before the outage (packets came in between), but nothing since
    # the link returned: it ends where the outage began
    estimator.on_report(1, 0, "video", 0, 95)
    assert not estimator.loss("video")
    clock.now += 0.3
    estimator.on_report(1, 250, "video", 150, 245)  # now past the outage's 150 packets
    assert not estimator.loss("video")
    clock.now += 0.3
    estimator.on_report(1, 2, "video", 150, 255)  # too few packets counted: the fraction
    assert estimator.loss("video") == 1 / 256
    for n in range(1, 4):  # then 1 of 30 packets a second
        clock.now += 1
        estimator.on_report(1, 9, "video", 150 + n, 255 + 30 * n)
    assert estimator.loss("video") == 3 / 90


def test_rate_meter_measures_bits_per_second() -> None:
    meter = RateMeter(alpha=1.0)
    assert meter.update(0, 10.0) is None
    assert meter.update(50_000, 11.0) == 400_000


def test_a_good_link_never_pauses() -> None:
    clock, estimator, policy = make()
    assert run(clock, estimator, policy, 60, remb=1_500_000, video_loss=5) == []
    assert not policy.paused


def test_a_low_estimate_pauses_only_after_it_held_and_resumes_after_the_pause() -> None:
    clock, estimator, policy = make()
    # a short dip does not pause
    assert run(clock, estimator, policy, 1.5, remb=300_000) == []
    assert run(clock, estimator, policy, 1, remb=1_500_000) == []
    assert run(clock, estimator, policy, 2.5, remb=300_000) == [True]
    assert policy.paused
    paused_at = clock.now
    # the link recovers: resume once the minimum pause is over and the audio came through clean
    assert run(clock, estimator, policy, 10, remb=1_200_000, audio_loss=0) == [False]
    assert clock.now - paused_at >= SETTINGS.min_pause_s


def test_a_low_estimate_on_a_short_round_trip_pauses_nothing_but_loss_still_does() -> None:
    """A round trip of 3 ms: no queue on the path, so an estimate of 300k for 800k sent is the
    receiver's own jitter (a loaded machine), not the link. Heavy loss is still congestion; on a
    path with a queue the same estimate pauses as before."""
    clock, estimator, policy = make()
    estimator.on_rtt(0.003)
    assert run(clock, estimator, policy, 30, remb=300_000, video_loss=10) == []
    assert run(clock, estimator, policy, 5, remb=300_000, video_loss=80) == [True]  # 31 %
    clock, estimator, policy = make()
    estimator.on_rtt(0.06)
    assert run(clock, estimator, policy, 2.5, remb=300_000) == [True]


def test_a_low_estimate_while_paused_is_probed_at_growing_intervals_not_believed() -> None:
    # While paused, a receiver's estimate follows the audio it still gets (Chromium's climbs a
    # few per cent a second from there), so it can never show room for video: each resume is a
    # probe, and a probe that fails doubles the next pause.
    clock, estimator, policy = make()
    run(clock, estimator, policy, 2.5, remb=300_000)
    assert policy.paused
    decisions = run(clock, estimator, policy, 120, remb=300_000, audio_loss=0)
    assert decisions[:4] == [False, True, False, True]
    assert policy.pause_s >= 20


def test_a_climbing_estimate_is_not_a_weak_link() -> None:
    # a receiver ramping up (after its start or a resume) reports far less than it is sent for
    # many seconds; what counts is that the estimate still grows
    clock, estimator, policy = make()
    remb, samples = 100_000.0, 0
    while remb < NEEDED:
        clock.now += 0.5
        remb *= 1.04
        estimator.on_remb(int(remb), [1, 2])
        samples += 1
        assert estimator.rising() == (samples > 2)  # (it needs one 0.8 s older to compare)
        assert policy.update(estimator, NEEDED) is None
    # it levels off below what the subscriber is sent: now it is weak
    decisions = run(clock, estimator, policy, 4, remb=300_000)
    assert not estimator.rising()
    assert decisions == [True]


def test_high_loss_pauses_and_a_silent_estimator_resumes_as_a_probe_after_the_pause() -> None:
    clock, estimator, policy = make()
    assert run(clock, estimator, policy, 3, remb=2_000_000, video_loss=80) == [True]
    paused_at = clock.now
    # no video, so no estimate; the audio comes through clean: resume after the minimum pause
    decisions = run(clock, estimator, policy, 10, audio_loss=0)
    assert decisions == [False]
    assert clock.now - paused_at >= SETTINGS.min_pause_s


def test_lossy_audio_while_paused_keeps_video_paused() -> None:
    clock, estimator, policy = make()
    run(clock, estimator, policy, 3, video_loss=80)
    assert policy.paused
    assert run(clock, estimator, policy, 60, audio_loss=40) == []


def _paused(policy: Any) -> bool:
    return bool(policy.paused)


def test_pauses_soon_after_a_resume_last_longer_so_the_video_does_not_flap() -> None:
    clock, estimator, policy = make()
    lengths = []
    for _ in range(4):
        run(clock, estimator, policy, 3, video_loss=80)  # each probe fails at once
        assert policy.paused
        assert run(clock, estimator, policy, 100, audio_loss=0, until_change=True) == [False]
        lengths.append(policy.pause_s)
        assert not _paused(policy)  # (a call: mypy would keep the assert above's narrowing)
        assert clock.now - policy.paused_at >= policy.pause_s
    assert lengths == [5.0, 10.0, 20.0, 40.0]
    # a resume that lasts: the next pause is short again
    run(clock, estimator, policy, SETTINGS.backoff_reset_s + 1, remb=2_000_000, video_loss=0)
    run(clock, estimator, policy, 4, video_loss=80)
    assert policy.paused and policy.pause_s == SETTINGS.min_pause_s


def test_estimates_during_warm_up_are_ignored() -> None:
    settings = BandwidthSettings(warmup_s=5.0)
    clock, estimator, policy = make(settings)
    assert run(clock, estimator, policy, 4.5, remb=100_000) == []
    assert run(clock, estimator, policy, 3, remb=100_000) == [True]


def test_no_pause_while_what_the_subscriber_is_sent_settles() -> None:
    clock, estimator, policy = make()
    for _ in range(20):  # a layer or a publisher's cap just changed: its reports lag behind
        clock.now += 0.5
        estimator.on_report(1, 128, "video")
        assert policy.update(estimator, NEEDED, settling=True) is None
    assert run(clock, estimator, policy, 3, video_loss=128) == [True]


def test_loss_is_congestion_only_with_a_low_settled_estimate_or_when_heavy() -> None:
    s = SETTINGS
    assert not congestion_loss(s, 0.08, 100_000, NEEDED)  # below pause_loss
    assert congestion_loss(s, 0.15, 500_000, NEEDED)  # and the estimate below what it is sent
    assert not congestion_loss(s, 0.15, None, NEEDED)  # no estimate nor round trip yet: waited
    assert congestion_loss(s, 0.30, None, NEEDED)  # heavy: regardless
    assert congestion_loss(s, 0.15, None, NEEDED, rtt_s=0.4)  # no estimate, a queue on the path
    assert not congestion_loss(s, 0.15, None, NEEDED, rtt_s=0.005)  # no estimate, no queue
    assert congestion_loss(s, 0.30, None, NEEDED, rtt_s=0.005)  # heavy: regardless
    assert not congestion_loss(s, 0.15, 1_000_000, NEEDED, rtt_s=0.4)  # the estimate decides
    assert not congestion_loss(s, 0.15, 1_000_000, NEEDED)  # random: the estimate stands above
    assert not congestion_loss(s, 0.15, 500_000, NEEDED, climbing=True)  # ramping up
    assert congestion_loss(s, 0.30, 5_000_000, NEEDED, climbing=True)  # heavy: regardless


def test_a_paused_video_on_a_link_with_random_loss_comes_back() -> None:
    clock, estimator, policy = make()
    run(clock, estimator, policy, 4, video_loss=80)
    assert policy.paused
    assert run(clock, estimator, policy, 10, audio_loss=20) == [False]  # 8 % on the audio alone
