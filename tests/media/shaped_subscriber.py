"""A three-party call with one *subscriber* on a weak link (tests/netshape.py), measured.

A and B publish video (aiortc's VP8, 320x240) and audio on clean links; C publishes audio only
and receives both through "4G weak" by default (down 800 kbit/s, up 300 kbit/s, 60 ± 20 ms,
2 % loss each way). What C receives from A and B is counted per publisher: video frames per
second, the longest video gap, audio frames against the 50 per second sent (the rest is what
C's decoder would have to conceal), and the longest audio gap; A ↔ B as the control.

`python -m tests.media.shaped_subscriber [--no-audio-first] [--l1t3] [--seconds 30]` prints JSON
(`--no-audio-first`: the SFU without the pause policy, for before/after figures; `--l1t3`: A's
and B's VP8 labelled with L1T3 temporal layer ids, `tests.media.temporal`, so the SFU can drop
layers for C before it pauses C's video).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import time
from typing import Any

from media.bandwidth import BandwidthSettings
from media.sfu import SfuMediaNode
from tests.media.shaped_call import SETUP_TIMEOUT_S, TimedClient, _async, _NodeProxy, _pump_offers
from tests.media.temporal import label_l1t3
from tests.netshape import (
    LinkShape,
    NamespaceLoop,
    NetshapeUnavailable,
    ShapedNetwork,
    namespace_host_addresses,
    unavailable_reason,
)

WEAK_4G = LinkShape(
    up_kbit=300, down_kbit=800, delay_ms=60, jitter_ms=20, up_loss=0.02, down_loss=0.02
)
#: The SFU without audio first: thresholds no link reaches.
NO_AUDIO_FIRST = BandwidthSettings(
    pause_below_ratio=1e-9,
    resume_above_ratio=1e-9,
    pause_loss=1.0,
    resume_loss=1.0,
    heavy_loss=1.0,
    cap_publishers=False,
)
AUDIO_FPS = 50  # 20 ms Opus frames


def _gaps(times: list[float], start: float, end: float) -> float:
    points = [start, *(t for t in times if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(points))


def _figures(times: dict[tuple[str, str], list[float]], peer: str, start: float, end: float) -> Any:
    video = times.get((peer, "video"), [])
    audio = times.get((peer, "audio"), [])
    seconds = end - start
    audio_n = sum(1 for t in audio if start <= t <= end)
    return {
        "video_fps": round(sum(1 for t in video if start <= t <= end) / seconds, 1),
        "video_max_gap_s": round(_gaps(video, start, end), 2),
        "audio_missing_pct": round(max(0.0, 100 * (1 - audio_n / (seconds * AUDIO_FPS))), 1),
        "audio_max_gap_s": round(_gaps(audio, start, end), 2),
    }


def _server_counters(node: SfuMediaNode) -> dict[str, Any]:
    session = node._rooms["call"].peers["c"]
    return {
        "c_pauses": session.policy.pauses,
        "c_layer_downs": session.layers.downs,
        "c_layer_at_end": session.layers.layer,
        "c_frames_dropped_for_layer": sum(
            t.layer_dropped for _, t in session.subscriptions.values() if t.kind == "video"
        ),
        "c_video_paused_at_end": session.policy.paused,
        "c_estimate_kbps": (session.estimator.estimate_bps() or 0) // 1000,
        "c_rembs": session.estimator.rembs,
        "c_reports": session.estimator.reports,
        "plis_sent": {
            p: sum(f.plis_sent for f in s.published.values())
            for p, s in node._rooms["call"].peers.items()
        },
    }


def run(
    *,
    shape: LinkShape = WEAK_4G,
    seconds: float = 30.0,
    audio_first: bool = True,
    l1t3: bool = False,
) -> Any:
    with label_l1t3() if l1t3 else contextlib.nullcontext():
        result = _run(shape=shape, seconds=seconds, audio_first=audio_first)
    return {"l1t3": l1t3, **result}


def _run(*, shape: LinkShape, seconds: float, audio_first: bool) -> Any:
    reason = unavailable_reason()
    if reason is not None:
        raise NetshapeUnavailable(reason)
    loops: list[NamespaceLoop] = []
    with ShapedNetwork(max_s=SETUP_TIMEOUT_S + seconds + 40) as net, namespace_host_addresses():
        try:
            server = NamespaceLoop(net.server)
            loops.append(server)
            hosts = {
                "a": net.add_participant("a"),
                "b": net.add_participant("b"),
                "c": net.add_participant("c", shape),
            }

            async def make_node() -> SfuMediaNode:
                return SfuMediaNode(
                    host_addresses=None,
                    ice_connect_timeout_s=SETUP_TIMEOUT_S,
                    bandwidth=None if audio_first else NO_AUDIO_FIRST,
                )

            node = server.run(make_node(), SETUP_TIMEOUT_S)
            proxy = _NodeProxy(server, node)
            clients: dict[str, tuple[TimedClient, NamespaceLoop]] = {}
            errors: list[BaseException] = []
            pump = server.submit(_pump_offers(node, clients, errors))
            for peer_id, host in hosts.items():
                loop = NamespaceLoop(host)
                loops.append(loop)

                async def make(peer_id: str = peer_id) -> TimedClient:
                    return TimedClient(proxy, "call", peer_id, video=peer_id != "c", audio=True)

                client = loop.run(make(), SETUP_TIMEOUT_S)
                clients[peer_id] = (client, loop)
                loop.run(client.join(), SETUP_TIMEOUT_S)

            deadline = time.monotonic() + SETUP_TIMEOUT_S
            while min(clients["c"][0].frames_from(p, "audio") for p in ("a", "b")) < 10:
                if errors:
                    raise errors[0]
                if time.monotonic() > deadline:
                    raise AssertionError("A's and B's audio never reached C")
                time.sleep(0.1)
            start = time.monotonic()
            time.sleep(seconds)
            end = time.monotonic()
            counters = server.run(_async(_server_counters, node), 10)
            times = {p: dict(clients[p][0].frame_times) for p in clients}
            if errors:
                raise errors[0]
            for client, loop in clients.values():
                with contextlib.suppress(Exception):
                    loop.run(client.close(), 10)
            pump.cancel()
            with contextlib.suppress(Exception):
                server.run(node.close(), 10)
        finally:
            for loop in loops:
                loop.stop()
    return {
        "audio_first": audio_first,
        "seconds": seconds,
        "c_receives": {p: _figures(times["c"], p, start, end) for p in ("a", "b")},
        "a_receives_b": _figures(times["a"], "b", start, end),
        "b_receives_a": _figures(times["b"], "a", start, end),
        "server": counters,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--no-audio-first", action="store_true")
    parser.add_argument("--l1t3", action="store_true")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    print(
        json.dumps(run(seconds=args.seconds, audio_first=not args.no_audio_first, l1t3=args.l1t3))
    )


if __name__ == "__main__":
    main()
