"""What publishers are told for their subscribers (issue #18): a camera is capped to what its
weakest subscriber can take at full frame rate (its REMB never below the cap), and a microphone
hears of its subscribers' audio loss; on a fake clock, with the room's own sessions."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from media import adapter, congestion, forwarding, sfu
from media.bandwidth import (
    BandwidthEstimator,
    BandwidthSettings,
    LayerPolicy,
    LayerSettings,
    PublishCapPolicy,
    VideoPausePolicy,
)
from media.interfaces import PublishGrant, PublishLimit
from tests.unit.media.test_bandwidth import Clock

SETTINGS = BandwidthSettings(warmup_s=0.0)


def feed(
    clock: Clock, policy: PublishCapPolicy, seconds: float, share: float | None, **kw: Any
) -> list[tuple[float, int | None]]:
    """`share` every 0.5 s for `seconds`; (seconds since start, cap) of each change."""
    start, changes = clock.now, list[tuple[float, int | None]]()
    while clock.now < start + seconds:
        clock.now += 0.5
        if policy.update(share, **kw):
            changes.append((clock.now - start, policy.cap))
    return changes


def test_a_weak_subscriber_lowers_the_cap_after_it_held_and_a_better_one_raises_it() -> None:
    clock = Clock()
    policy = PublishCapPolicy(SETTINGS, clock)
    assert feed(clock, policy, 10, None) == []  # nobody constrains it: no cap
    assert feed(clock, policy, 1.5, 254_000) == []  # a short dip does not cap
    assert feed(clock, policy, 5, None) == []
    assert feed(clock, policy, 5, 254_000) == [
        (2.5, 250_000)
    ]  # first seen at 0.5, held 2 s; 10 kbit/s steps
    assert feed(clock, policy, 5, 265_000) == []  # within 10 %: not worth a message
    assert feed(clock, policy, 10, 400_000) == [(4.5, 400_000)]  # up after 4 s
    assert feed(clock, policy, 10, 900_000) == [(4.5, None)]  # above the client's own cap


def test_no_cap_is_below_the_floor() -> None:
    clock = Clock()
    policy = PublishCapPolicy(SETTINGS, clock)
    feed(clock, policy, 3, 20_000)
    assert policy.cap == SETTINGS.cap_floor_bps


class Room:
    """Publishers a and b, subscribers c (weak) and d, each receiving both cameras (550 kbit/s
    each until `sending` says otherwise)."""

    def __init__(self, settings: BandwidthSettings = SETTINGS) -> None:
        self.clock = Clock()
        self.settings = settings
        node = sfu.SfuMediaNode()
        self.room = forwarding.Room("r")
        receiver = cast(Any, SimpleNamespace(getSynchronizationSources=list))
        for peer in ("a", "b", "c", "d"):
            session = forwarding.PeerSession(
                self.room,
                peer,
                cast(Any, SimpleNamespace(connectionState="connected")),
                PublishGrant(),
                estimator=BandwidthEstimator(settings, self.clock),
                publish_cap=PublishCapPolicy(settings, self.clock),
            )
            session.policy.created_at = self.clock.now - 60
            session.connected = True
            self.room.peers[peer] = session
        for publisher in ("a", "b"):
            camera = forwarding.TrackForwarder(
                node, self.room, publisher, "video", f"{publisher}-cam", receiver, "vp8", True
            )
            self.room.peers[publisher].published[camera.track_id] = camera
            camera.rate.bps = 550_000
            for subscriber in ("c", "d"):
                track = forwarding.ForwardedTrack(camera, subscriber)
                camera.subscribers[subscriber] = track
                self.room.peers[subscriber].subscriptions[camera.key] = (None, track)

    def sending(self, bps: float) -> None:
        for publisher in ("a", "b"):
            for camera in self.room.peers[publisher].published.values():
                camera.rate.bps = bps

    def layered(self, *rates: float) -> None:
        """Both cameras send temporal layers 0, 1, 2 at these bitrates."""
        for publisher in ("a", "b"):
            for camera in self.room.peers[publisher].published.values():
                camera.top_layer = 2
                for layer, bps in enumerate(rates):
                    camera.layer_rates[layer].bps = bps

    def run(self, seconds: float, **remb: int) -> list[tuple[float, PublishLimit]]:
        start, events = self.clock.now, list[tuple[float, PublishLimit]]()
        while self.clock.now < start + seconds:
            self.clock.now += 0.5
            for peer, bps in remb.items():
                self.room.peers[peer].estimator.on_remb(bps, [1, 2])
            for event in congestion.publish_caps(self.room, self.settings, self.clock.now):
                events.append((self.clock.now - start, event))
        return events


def test_each_camera_is_capped_for_the_weakest_subscriber_and_freed_when_it_recovers() -> None:
    room = Room()
    # c's 700 kbit/s: 0.8 × 700k over its two videos (no audio here) = 280 kbit/s each, once
    # its estimate has 0.8 s of history (at 1.5 s) and held 2 s
    events = room.run(5, c=700_000, d=5_000_000)
    assert events == [
        (3.5, PublishLimit("r", "a", 280_000)),
        (3.5, PublishLimit("r", "b", 280_000)),
    ]
    # the cameras follow; c's estimate, no longer below what it is sent, does not lower it more
    room.sending(280_000)
    assert room.run(10, c=500_000, d=5_000_000) == []
    # its link recovers
    events = room.run(10, c=5_000_000, d=5_000_000)
    assert [e for _, e in events] == [PublishLimit("r", "a", None), PublishLimit("r", "b", None)]


def test_a_subscriber_held_at_the_base_layer_is_not_taken_for_a_weak_link() -> None:
    # c's link takes everything, but its layer was dropped (loss, say): it receives 2 × 275k
    # and its estimate stops at 1.5 × that, below the 2 × 550k of every layer
    room = Room()
    room.layered(275_000, 125_000, 150_000)
    room.room.peers["c"].layers.layer = 0
    assert room.run(10, c=825_000, d=5_000_000) == []
    # really below what it receives now: capped
    assert [e.max_bps for _, e in room.run(5, c=450_000, d=5_000_000)] == [180_000, 180_000]


def test_a_low_estimate_on_a_short_round_trip_caps_nobody() -> None:
    """c's estimate falls while its round trip stays at 3 ms (a receiver on a loaded machine):
    not its link, so the others' cameras keep their rate; with a queue on its path, capped."""
    room = Room()
    room.room.peers["c"].estimator.on_rtt(0.003)
    assert room.run(10, c=700_000, d=5_000_000) == []
    room.room.peers["c"].estimator.on_rtt(0.2)
    assert [e.max_bps for _, e in room.run(5, c=700_000, d=5_000_000)] == [280_000, 280_000]


def test_a_subscriber_too_weak_for_the_floor_caps_nobody() -> None:
    room = Room()
    assert room.run(10, c=200_000, d=5_000_000) == []  # 80 kbit/s a video: layers and pause


def test_a_subscriber_left_waiting_below_the_top_layer_holds_the_cameras_at_the_floor() -> None:
    """c's layers fell to the base, where it receives 2 × 110k, and its estimate settled at
    240k: too low for a probe up (1.2 × 220k), too low for a cap (96 kbit/s a video), not low
    enough to pause. Once a probe would have come, the cameras are held at the floor, so it
    gets every frame; the same at layer 1; not on a short round trip (no queue: not its link),
    nor while paused."""
    cases = ((0.2, False, True, 0), (0.2, False, True, 1), (0.003, False, False, 0))
    for rtt, paused, capped, layer in (*cases, (0.2, True, False, 0)):
        room = Room()
        room.layered(110_000, 60_000, 80_000)
        c = room.room.peers["c"]
        c.estimator.on_rtt(rtt)
        c.policy.paused = paused
        c.layers.layer, c.layers.changed_at = layer, room.clock.now
        waited = c.layers.hold_s + c.layers.layers.up_after_s
        assert room.run(waited - 0.5, c=240_000, d=5_000_000) == []
        events = room.run(5, c=240_000, d=5_000_000)
        assert [e.max_bps for _, e in events] == ([100_000] * 2 if capped else []), (rtt, layer)
        if capped:  # its layers climb; the floor holds until its share rises above it
            c.layers.layer = 2
            assert room.run(20, c=240_000, d=5_000_000) == []


def rounds(
    room: Room, seconds: float, layers: tuple[float, ...], **remb: int
) -> list[tuple[float, PublishLimit | bool]]:
    """The SFU's room loop on the fake clock: both cameras send temporal layers at `layers`
    (bits/s, counted in bytes as packets would be), each round `congestion.evaluate` then
    `publish_caps`. Returns (seconds since start, event): each cap, and c's pause (True) and
    resume (False)."""
    start, events = room.clock.now, list[tuple[float, PublishLimit | bool]]()
    c = room.room.peers["c"]
    while room.clock.now < start + seconds:
        room.clock.now += 0.5
        for publisher in ("a", "b"):
            for camera in room.room.peers[publisher].published.values():
                camera.top_layer = 2
                for tid, bps in enumerate(layers):
                    camera.layer_bytes[tid] += int(bps * 0.5 / 8)
                camera.bytes_in += int(sum(layers) * 0.5 / 8)
        for peer, bps in remb.items():
            room.room.peers[peer].estimator.on_remb(bps, [1, 2])
        paused = c.policy.paused
        congestion.evaluate(room.room, room.settings, room.clock.now)
        if c.policy.paused != paused:
            events.append((room.clock.now - start, c.policy.paused))
        for event in congestion.publish_caps(room.room, room.settings, room.clock.now):
            events.append((room.clock.now - start, event))
    return events


async def test_a_subscriber_whose_base_layers_fit_only_at_the_floor_caps_the_cameras_before_a_pause() -> (
    None
):
    """c's estimate (170k, or 60k) is below its base layers as sent (2 × 110k of 2 × 250k), and
    its share (68 kbit/s a video) below the floor. Layers fall to the base; at 170k the base
    layers at the floor (2 × 44k) fit 0.8 × the estimate, so the cameras are held at the floor
    and the pause waits for them: once they send it, none comes; if they ignore their caps, it
    comes when they had time. At 60k not even those fit: the pause comes as before, and nobody
    is capped for it."""
    sent = (110_000.0, 60_000.0, 80_000.0)
    for estimate, cameras in ((170_000, "follow"), (170_000, "ignore"), (60_000, "")):
        room = Room()
        for peer in ("c", "d"):
            session = room.room.peers[peer]
            session.policy = VideoPausePolicy(SETTINGS, room.clock)
            session.policy.created_at = room.clock.now - 60
            session.layers = LayerPolicy(SETTINGS, LayerSettings(), room.clock)
        room.room.peers["c"].estimator.on_rtt(0.2)
        events = [e for _, e in rounds(room, 5, sent, c=estimate, d=5_000_000)]
        if not cameras:  # the layer drop settles for 4 s, then the pause holds for 2
            events += [e for _, e in rounds(room, 5, sent, c=estimate, d=5_000_000)]
            assert events == [True], estimate
            continue
        assert events == [PublishLimit("r", "a", 100_000), PublishLimit("r", "b", 100_000)]
        if cameras == "ignore":
            events = [e for _, e in rounds(room, 10, sent, c=estimate, d=5_000_000)]
            assert events[:1] == [True]
            continue
        # the cameras follow their caps: the base layers now fit, and no pause comes
        events = [
            e for _, e in rounds(room, 20, tuple(b * 0.4 for b in sent), c=estimate, d=5_000_000)
        ]
        assert events == []
        assert not room.room.peers["c"].policy.paused


def test_a_capped_for_subscriber_whose_link_falls_further_keeps_the_caps_at_the_floor() -> None:
    room = Room()
    assert [e.max_bps for _, e in room.run(5, c=700_000, d=5_000_000)] == [280_000, 280_000]
    room.sending(280_000)
    # c's estimate falls to 200k: 80 kbit/s a video, below the floor. Lifting the caps would
    # send it both cameras at full rate; they stay at the floor instead
    events = room.run(10, c=200_000, d=5_000_000)
    assert [e.max_bps for _, e in events] == [100_000, 100_000]
    assert room.run(20, c=200_000, d=5_000_000) == []
    # audio only: it receives no video, and nobody is capped for it any more
    room.room.peers["c"].receive_video = False
    events = room.run(10, c=200_000, d=5_000_000)
    assert [e.max_bps for _, e in events] == [None, None]


def test_an_estimate_that_is_not_below_what_the_subscriber_is_sent_caps_nobody() -> None:
    # a receiver's estimate stays near what it receives: 1 Mbit/s for 2 × 550k is no limit
    room = Room()
    assert room.run(10, c=1_000_000, d=5_000_000) == []


def test_a_climbing_estimate_raises_a_cap_but_never_lowers_it_and_a_pause_keeps_it() -> None:
    room = Room()
    climb = 200_000.0
    for _ in range(20):  # +4 % every 0.5 s: a receiver ramping up
        climb *= 1.04
        assert room.run(0.5, c=int(climb), d=5_000_000) == []
    events = room.run(5, c=700_000, d=5_000_000)
    assert [e.max_bps for _, e in events] == [280_000, 280_000]
    # paused: its estimate now follows its audio alone, and says nothing of the link
    room.room.peers["c"].policy.paused = True
    assert room.run(30, c=50_000, d=5_000_000) == []
    room.room.peers["c"].policy.paused = False
    # resumed, ramping up again from low: the cap holds; climbing above it: raised
    climb = 300_000.0
    raised = []
    for _ in range(40):
        climb *= 1.04
        raised += room.run(0.5, c=int(climb), d=5_000_000)
    assert raised and all(e.max_bps is not None and e.max_bps > 280_000 for _, e in raised)


def test_caps_can_be_switched_off() -> None:
    room = Room(BandwidthSettings(warmup_s=0.0, cap_publishers=False))
    assert room.run(10, c=700_000, d=5_000_000) == []


async def test_a_capped_publishers_remb_never_reads_below_its_cap() -> None:
    sent: list[Any] = []

    class Receiver:
        async def _send_rtcp(self, packet: Any) -> None:
            sent.append(packet)

    receiver = Receiver()
    cap: list[int | None] = [None]
    adapter.floor_remb(receiver, lambda: cap[0])

    def remb(bps: int) -> RtcpPsfbPacket:
        return RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=pack_remb_fci(bps, [7]))

    await receiver._send_rtcp(remb(30_000))  # no cap: as aiortc measured it
    cap[0] = 190_000
    await receiver._send_rtcp(remb(30_000))
    await receiver._send_rtcp(remb(400_000))
    pli = RtcpPsfbPacket(fmt=1, ssrc=1, media_ssrc=7)
    await receiver._send_rtcp(pli)
    assert [unpack_remb_fci(p.fci)[0] for p in sent[:3]] == [30_000, 190_000, 400_000]
    assert unpack_remb_fci(sent[1].fci)[1] == [7]
    assert sent[3] is pli


async def test_a_publishers_audio_hears_of_its_subscribers_loss_so_it_adds_fec() -> None:
    room = Room()
    receiver = cast(Any, SimpleNamespace(getSynchronizationSources=list))
    node = sfu.SfuMediaNode()
    mic = forwarding.TrackForwarder(node, room.room, "a", "audio", "a-mic", receiver, "opus", True)
    for subscriber in ("c", "d"):
        mic.subscribers[subscriber] = forwarding.ForwardedTrack(mic, subscriber)
    assert congestion.audio_loss_floor(room.room, mic) == 0.0
    for second in range(1, 4):  # c loses 3 % of its audio, d nothing
        room.clock.now += 1
        room.room.peers["c"].estimator.on_report(9, 8, "audio", 3 * second, 100 * second)
        room.room.peers["d"].estimator.on_report(9, 0, "audio", 0, 100 * second)
    assert congestion.audio_loss_floor(room.room, mic) == 0.03
    room.room.peers["c"].estimator.on_report(9, 128, "audio", 200, 400)
    assert congestion.audio_loss_floor(room.room, mic) == congestion.AUDIO_LOSS_FLOOR_MAX

    sent: list[Any] = []

    class Receiver:
        async def _send_rtcp(self, packet: Any) -> None:
            sent.append(packet)

    rtcp = Receiver()
    floor = [0.03]
    adapter.floor_reported_loss(rtcp, lambda: floor[0])

    def report(fraction: int) -> RtcpRrPacket:
        info = RtcpReceiverInfo(
            ssrc=5,
            fraction_lost=fraction,
            packets_lost=0,
            highest_sequence=9,
            jitter=0,
            lsr=0,
            dlsr=0,
        )
        return RtcpRrPacket(ssrc=1, reports=[info])

    await rtcp._send_rtcp(report(0))
    await rtcp._send_rtcp(report(40))
    floor[0] = 0.0
    await rtcp._send_rtcp(report(0))
    assert [p.reports[0].fraction_lost for p in sent] == [7, 40, 0]
