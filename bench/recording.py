"""Recording benchmark: passthrough WebM muxing vs aiortc MediaRecorder (decode + re-encode).

One worker process runs the node; 4 load clients (bench.sfu.LoadClient: pre-encoded
640x480@15 VP8, no decoding) publish into one room. Three runs, worker CPU each:
  baseline     passthrough SFU, no recording
  passthrough  + media.recorder.Recording (encoded packets into WebM)
  mediarecorder  receivers decode, aiortc MediaRecorder re-encodes each track into WebM
Per recorded stream = (run − baseline) / streams: the recording's own cost, receiving excluded.

    python -m bench.recording [--scale 0.5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaRecorder

from bench.common import smoke
from bench.sfu import LoadClient, encode_clip
from media import adapter
from media.forwarding import TrackForwarder
from media.interfaces import PeerDescription, RecordingFile
from media.sfu import SfuMediaNode
from media.workers import WorkerPoolMediaNode

PUBLISHERS = 4
#: Every check this benchmark reports (bench.common marks one it could not measure).
CHECKS = (
    "recorder_over_passthrough_cpu_per_stream",
    "passthrough_cores_per_stream",
)
TIMEOUT = (300.0, 300.0)  # overall bound in s: fixed + per unit of scale


class MediaRecorderNode(SfuMediaNode):
    """Baseline: publisher tracks are decoded by aiortc and fed to MediaRecorder."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sources: dict[str, MediaStreamTrack] = {}
        self._recorders: list[MediaRecorder] = []

    def _attach_publisher_track(self, track: MediaStreamTrack, forwarder: TrackForwarder) -> None:
        self._sources[forwarder.key] = track

    async def start_recording(self, *, room_id: str, directory: Path) -> None:
        for i, track in enumerate(self._sources.values()):
            recorder = MediaRecorder(str(Path(directory) / f"mr-{i}.webm"))
            recorder.addTrack(track)
            await recorder.start()
            self._recorders.append(recorder)

    async def stop_recording(self, *, room_id: str) -> tuple[RecordingFile, ...]:
        for recorder in self._recorders:
            await recorder.stop()
        self._recorders.clear()
        return ()


async def measure(mode: str, window_s: float, clip: list[bytes], settle_s: float = 2.0) -> float:
    node_class = (
        "bench.recording:MediaRecorderNode" if mode == "mediarecorder" else "media.sfu:SfuMediaNode"
    )
    adapter.install_passthrough()
    adapter.restrict_host_addresses(["127.0.0.1"])
    # Publishers only need the server: put each in its own room so nothing is forwarded.
    async with WorkerPoolMediaNode(
        workers=1, host_addresses=["127.0.0.1"], node_class=node_class
    ) as pool:
        # video only (audio=None): the recorded streams are the clip's VP8
        clients = [LoadClient(pool, "rec", f"p{i}", clip, None) for i in range(PUBLISHERS)]

        offers: set[asyncio.Task[None]] = set()

        async def pump() -> None:
            async for event in pool.events():
                if isinstance(event, PeerDescription):
                    client = next(c for c in clients if c.peer == event.peer_id)
                    offers.add(asyncio.create_task(client.on_offer(event.description)))

        pump_task = asyncio.create_task(pump())
        try:
            for client in clients:
                await client.join()
            await asyncio.sleep(settle_s)
            with tempfile.TemporaryDirectory() as directory:
                if mode != "baseline":
                    await pool.start_recording(room_id="rec", directory=Path(directory))
                    await asyncio.sleep(settle_s / 2)
                before = await pool.worker_cpu_s()
                start = time.monotonic()
                await asyncio.sleep(window_s)
                cores = (await pool.worker_cpu_s() - before) / (time.monotonic() - start)
                if mode != "baseline":
                    await pool.stop_recording(room_id="rec")
        finally:  # also when cancelled at the benchmark's deadline
            pump_task.cancel()
            for task in offers:
                task.cancel()
            await asyncio.gather(pump_task, *offers, return_exceptions=True)
            for client in clients:
                await client.pc.close()
    return cores


async def run(scale: float = 1.0) -> dict[str, Any]:
    window_s = 0.5 if smoke(scale) else max(2.0, 8.0 * scale)
    settle_s = 1.0 if smoke(scale) else 2.0
    clip = await asyncio.to_thread(encode_clip)
    cores = {
        m: await measure(m, window_s, clip, settle_s)
        for m in ("baseline", "passthrough", "mediarecorder")
    }
    # Below ~0.001 cores per stream the difference is within the noise of two runs: floor it
    # there so the ratio is conservative rather than infinite.
    passthrough = max((cores["passthrough"] - cores["baseline"]) / PUBLISHERS, 0.001)
    recorder = (cores["mediarecorder"] - cores["baseline"]) / PUBLISHERS
    ratio = recorder / passthrough
    return {
        "bench": "recording",
        "video": "VP8 640x480@15 ~500 kbps, video only, 4 recorded streams",
        "window_s": window_s,
        "server_cores": {k: round(v, 4) for k, v in cores.items()},
        "checks": [
            {
                "name": "recorder_over_passthrough_cpu_per_stream",
                "value": round(ratio, 1),
                "goal": ">= 10",
                "unit": "x",
                "pass": ratio >= 10,
            },
            {
                "name": "passthrough_cores_per_stream",
                "value": round(passthrough, 5),
                "goal": "<= 0.01",
                "unit": "cores",
                "pass": passthrough <= 0.01,
            },
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.scale)), indent=2))


if __name__ == "__main__":
    main()
