"""Passthrough recording: encoded VP8/Opus frames muxed into one WebM file per track, no codec.

The event loop only does `Recording.write()` (a `put_nowait` on a bounded queue). One writer
thread per recording owns every PyAV container of that recording:

    TrackForwarder ─put_nowait─► queue.Queue(maxsize) ─► writer thread ─► <room>-<peer>-<kind>.webm

- Video is held until its first keyframe; width/height come from the VP8 keyframe header.
- Opus gets an OpusHead codec header (RFC 7845 §5.1) as extradata, so players open it
  (written by an opened-but-unused libopus encoder context: zero encode calls).
- Each file's pts start at 0 at its first packet, and `started_at_unix` is that packet's
  arrival wall clock: tracks are aligned by wall clock.
- `flush_packets=1` and one-second clusters: a crash (kill -9) loses at most about a second and
  leaves a file FFmpeg/PyAV can read (without cues or a final duration).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from media import adapter
from media.errors import RecordingError
from media.interfaces import RecordingFile, TrackKind

logger = logging.getLogger(__name__)

MAX_QUEUED_PACKETS = 600  # ≈ 5 s of a 3-party session (3 × (15 video + 50 audio) fps)
MS = Fraction(1, 1000)
OPUS_FRAME_MS = 20
OPUS_CHANNELS = 2
MUX_OPTIONS = {"flush_packets": "1", "cluster_time_limit": "1000"}


def opus_head(channels: int = OPUS_CHANNELS, input_rate: int = 48000) -> bytes:
    """OpusHead identification header, mapping family 0 (RFC 7845 §5.1)."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, 0, input_rate, 0, 0)


def safe_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:64]


@dataclass(frozen=True, slots=True)
class TrackKey:
    peer_id: str
    kind: TrackKind
    track_id: str


class _TrackFile:
    """Lives in the writer thread only."""

    def __init__(self, path: Path, key: TrackKey, codec: str) -> None:
        self.path = path
        self.key = key
        self.codec = codec
        self.container: Any = None
        self.stream: Any = None
        self.first_ts: int | None = None
        self.started_at_unix = 0.0
        self.last_pts_ms = -1
        self.end_ms = 0

    def _open(self, data: bytes) -> bool:
        if self.key.kind == "video":
            if self.codec != "vp8":
                raise RecordingError(f"recording supports VP8 video, not {self.codec}")
            dims = adapter.vp8_dimensions(data)
            if dims is None:
                return False  # hold video until the first keyframe
            self.container = av.open(str(self.path), "w", format="webm", options=MUX_OPTIONS)
            self.stream = self.container.add_mux_stream("vp8", width=dims[0], height=dims[1])
        else:
            self.container = av.open(str(self.path), "w", format="webm", options=MUX_OPTIONS)
            # A mux-only stream has no codec context, hence no way to set extradata. A libopus
            # encoder context that is opened but never fed writes a proper OpusHead (channels,
            # pre-skip 312, 48 kHz) when the container starts; no frame is ever encoded.
            self.stream = self.container.add_stream("libopus", rate=48000, layout="stereo")
            self.stream.codec_context.extradata = opus_head()
        self.stream.time_base = MS
        return True

    def write(self, data: bytes, ts: int, time_base: Fraction, arrival_unix: float) -> None:
        if self.container is None:
            if not self._open(data):
                return
            self.first_ts = ts
            self.started_at_unix = arrival_unix
        assert self.first_ts is not None
        pts_ms = int((ts - self.first_ts) * time_base * 1000)
        if pts_ms <= self.last_pts_ms:
            pts_ms = self.last_pts_ms + 1
        self.last_pts_ms = pts_ms
        packet = av.Packet(data)
        packet.stream = self.stream
        packet.time_base = MS
        packet.pts = packet.dts = pts_ms
        if self.key.kind == "video" and adapter.is_keyframe(self.codec, data):
            packet.is_keyframe = True
        self.container.mux(packet)
        self.end_ms = pts_ms + (OPUS_FRAME_MS if self.key.kind == "audio" else 0)

    def close(self) -> None:
        if self.container is not None:
            self.container.close()


class Recording:
    """One room's recording. `write()` is called on the event loop and never blocks."""

    def __init__(
        self,
        room_id: str,
        directory: Path,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        """`on_error` is called once, from the writer thread, at the first write failure
        (a full disk, say): the caller stops the recording while the call goes on."""
        self.room_id = room_id
        self._on_error = on_error
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[tuple[TrackKey, str, bytes, int, Fraction, float] | None] = (
            queue.Queue(maxsize=MAX_QUEUED_PACKETS)
        )
        self._files: dict[TrackKey, _TrackFile] = {}
        #: video tracks whose frames are queued from a keyframe on; a track is out of it before
        #: its first keyframe and after a frame of it was dropped on a full queue
        self._keyed: set[TrackKey] = set()
        self.dropped_packets = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"recording:{room_id}", daemon=True)
        self._thread.start()

    def path_for(self, key: TrackKey) -> Path:
        return self.directory / (
            f"{safe_name(self.room_id)}-{safe_name(key.peer_id)}-{key.kind}-"
            f"{safe_name(key.track_id)[:8]}.webm"
        )

    def write(
        self,
        key: TrackKey,
        codec: str,
        data: bytes,
        ts: int,
        time_base: Fraction,
        arrival_unix: float,
        keyframe: bool,
    ) -> bool:
        """Queue one frame for the writer thread. True when this video track is waiting for a
        keyframe (none since the recording started, or frames were dropped on a full queue):
        the caller asks the publisher for one. Asked once at the start only, a request the
        browser ignored (Chrome drops one within 300 ms of its last keyframe) left a camera
        off the record until its next keyframe on its own, minutes later."""
        if key.kind == "video" and key not in self._keyed:
            if not keyframe:
                return True
            self._keyed.add(key)
        try:
            self._queue.put_nowait((key, codec, data, ts, time_base, arrival_unix))
        except queue.Full:
            self.dropped_packets += 1
            if key.kind == "video":
                self._keyed.discard(key)
                return True
        return False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            if self.error is not None:
                continue
            key, codec, data, ts, time_base, arrival_unix = item
            try:
                track_file = self._files.get(key)
                if track_file is None:
                    track_file = self._files[key] = _TrackFile(self.path_for(key), key, codec)
                track_file.write(data, ts, time_base, arrival_unix)
            except Exception as exc:  # keep the loop draining; reported at once and on stop
                logger.exception("recording %s failed on %s", self.room_id, key)
                self.error = exc
                if self._on_error is not None:
                    self._on_error(exc)
        for track_file in self._files.values():
            try:
                track_file.close()
            except Exception as exc:
                logger.exception("recording %s: closing %s failed", self.room_id, track_file.path)
                self.error = self.error or exc

    def stop(self) -> tuple[RecordingFile, ...]:
        """Blocking: drain, close every file, hash them. Run it in a thread."""
        self._queue.put(None)
        self._thread.join()
        files = []
        for track_file in self._files.values():
            if track_file.container is None:
                continue
            files.append(
                describe_file(
                    self.room_id,
                    track_file.key,
                    track_file.path,
                    track_file.started_at_unix,
                    track_file.end_ms / 1000,
                )
            )
        return tuple(files)


def describe_file(
    room_id: str, key: TrackKey, path: Path, started_at_unix: float, duration_s: float
) -> RecordingFile:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return RecordingFile(
        room_id=room_id,
        peer_id=key.peer_id,
        kind=key.kind,
        path=path,
        sha256=digest.hexdigest(),
        started_at_unix=started_at_unix,
        duration_s=duration_s,
        size_bytes=path.stat().st_size,
    )
