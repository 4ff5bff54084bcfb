"""One playable file per session: the per-track WebM originals composed offline into an MP4.

    originals (VP8 / Opus WebM, one per participant and kind, `Recording.started_at`)
      ├─ video: each participant's latest frame at t - offset, scaled into a grid cell
      │         (1, 2, 4 or 9 cells), captioned with name and role, a clock (district time)
      │         in the corner; a black cell with the name while a participant has no video
      └─ audio: every track resampled to 48 kHz stereo s16 and summed with clipping
    ─► H.264 (libx264, veryfast) + AAC in MP4 (faststart), written beside the originals
       as `composite-<session>.mp4` through a `.part` file renamed at the end.

Everything here is blocking (PyAV, numpy, Pillow): the job runs `compose` in a thread, after
the session has ended, never during the call. The originals are only read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from PIL import Image, ImageDraw, ImageFont

from server.cases.pdf import cjk_font, face_index
from server.sessions.speech import SpeechMeter

FPS = 15
AUDIO_RATE = 48_000
AAC_FRAME = 1024
SIZE_SMALL = (640, 360)
SIZE_LARGE = (1280, 720)
PRESET = "veryfast"
#: swscale's fast bilinear for downscaling into a cell: cheaper than the default bicubic,
#: no visible difference at cell size.
SCALER = "FAST_BILINEAR"

ROLE_ZH = {
    "host": "主持人",
    "mediator": "调解员",
    "official": "工作人员",
    "party": "当事人",
    "agent": "代理人",
    "interpreter": "翻译",
    "observer": "旁听",
}


class CompositeError(Exception):
    """A track could not be read (corrupt, truncated, not a recording): the composite fails."""


class CompositeCancelled(Exception):
    """Raised by a progress callback to stop composing (the partial file is removed)."""


@dataclass(frozen=True, slots=True)
class Track:
    path: Path
    identity: str
    kind: str  # "video" | "audio" (a "screen" track counts as video)
    started_at: datetime
    duration_s: float


@dataclass(frozen=True, slots=True)
class Person:
    identity: str
    name: str
    role: str


# -- pure functions ---------------------------------------------------------------------------


def grid(n: int) -> tuple[int, int]:
    """(columns, rows) for n participants: 1, 2 (side by side), 4 or 9 cells."""
    if n <= 1:
        return 1, 1
    if n == 2:
        return 2, 1
    if n <= 4:
        return 2, 2
    return 3, 3


def cells(n: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of the first min(n, 9) cells, row by row, even sizes (for yuv420p)."""
    cols, rows = grid(n)
    w, h = (width // cols) & ~1, (height // rows) & ~1
    y0 = (height - h * rows) // 2
    out = []
    for i in range(min(n, cols * rows)):
        r, c = divmod(i, cols)
        out.append((c * w, y0 + r * h, w, h))
    return out


def fit(src_w: int, src_h: int, box_w: int, box_h: int) -> tuple[int, int, int, int]:
    """(w, h, dx, dy): the source scaled into the box keeping its aspect ratio, even sizes,
    centred (black bars left/right or above/below)."""
    scale = min(box_w / max(src_w, 1), box_h / max(src_h, 1))
    w = max(2, min(box_w, round(src_w * scale)) & ~1)
    h = max(2, min(box_h, round(src_h * scale)) & ~1)
    return w, h, (box_w - w) // 2, (box_h - h) // 2


def offsets(started: list[datetime]) -> list[float]:
    """Seconds after the earliest start, per track (the composite's t=0 is the first track)."""
    if not started:
        return []
    t0 = min(started)
    return [(s - t0).total_seconds() for s in started]


def total_duration(tracks: list[Track]) -> float:
    offs = offsets([t.started_at for t in tracks])
    return max((o + t.duration_s for o, t in zip(offs, tracks, strict=True)), default=0.0)


def mix(chunks: list[np.ndarray]) -> np.ndarray:
    """Sum int16 PCM chunks of equal shape, clipped to the int16 range (no wrap-around)."""
    if not chunks:
        raise ValueError("nothing to mix")
    acc = np.zeros(chunks[0].shape, dtype=np.int32)
    for c in chunks:
        acc += c
    return np.clip(acc, -32768, 32767).astype(np.int16)


def pick_size(n_people: int) -> tuple[int, int]:
    """640x360 for every grid: bench/composite.py measured a 4-person session at 0.18x real
    time on one core there, and at 0.40x at 1280x720 (over the 0.25 goal); a 3x3 grid's cells
    are then 212x120, enough to tell who speaks."""
    return SIZE_SMALL


def clock_text(t0: datetime, t: float, tz: ZoneInfo) -> str:
    return (t0 + timedelta(seconds=t)).astimezone(tz).strftime("%H:%M:%S")


# -- text -------------------------------------------------------------------------------------


def _font(size: int) -> Any:
    path = cjk_font()
    return ImageFont.truetype(str(path), size, index=face_index(path))


def _label(text: str, size: int) -> np.ndarray:
    """White text on a translucent black box, as an RGBA array."""
    font = _font(size)
    box = font.getbbox(text)
    pad = max(2, size // 4)
    w, h = box[2] - box[0] + 2 * pad, box[3] - box[1] + 2 * pad
    img = Image.new("RGBA", (w, h), (0, 0, 0, 160))
    ImageDraw.Draw(img).text((pad - box[0], pad - box[1]), text, font=font, fill="white")
    return np.asarray(img)


def _blend(canvas: np.ndarray, label: np.ndarray, x: int, y: int) -> None:
    h = min(label.shape[0], canvas.shape[0] - y)
    w = min(label.shape[1], canvas.shape[1] - x)
    if h <= 0 or w <= 0:
        return
    lab = label[:h, :w]
    alpha = lab[:, :, 3:4].astype(np.uint16)
    region = canvas[y : y + h, x : x + w]
    region[:] = (
        (lab[:, :, :3].astype(np.uint16) * alpha + region.astype(np.uint16) * (255 - alpha)) // 255
    ).astype(np.uint8)


# -- readers ----------------------------------------------------------------------------------


def _open(path: Path) -> Any:
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise CompositeError(f"{path.name}: {e}") from None


class _VideoReader:
    """The latest frame of one video track at or before a (monotonic) time, scaled to a cell."""

    def __init__(self, path: Path, offset: float, size: tuple[int, int], duration: float) -> None:
        self.offset = offset
        #: After this (track time) the track has ended: its cell turns black with the name.
        self._end = duration + 0.5
        self.size = size
        self._container = _open(path)
        if not self._container.streams.video:
            self._container.close()
            raise CompositeError(f"{path.name}: no video stream")
        self._name = path.name
        self._scaler = VideoReformatter()
        self._frames = self._decode()
        self._next: Any = None
        self._current: np.ndarray | None = None
        self._done = False

    def _decode(self) -> Iterator[Any]:
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            yield from self._container.decode(stream)
        except av.error.FFmpegError as e:
            raise CompositeError(f"{self._name}: {e}") from None

    def _scale(self, frame: Any, w: int, h: int) -> np.ndarray:
        # One reformatter per track: its swscale context is made once, not once per frame.
        out = self._scaler.reformat(frame, width=w, height=h, format="rgb24", interpolation=SCALER)
        img: np.ndarray = out.to_ndarray()
        return img

    def frame_at(self, t: float) -> np.ndarray | None:
        local = t - self.offset
        if local < 0:
            return None
        while not self._done:
            if self._next is None:
                try:
                    self._next = next(self._frames)
                except StopIteration:
                    self._done = True
                    break
            if self._next.time is not None and self._next.time > local:
                break
            w, h, dx, dy = fit(self._next.width, self._next.height, *self.size)
            if (w, h) == self.size:
                self._current = self._scale(self._next, w, h)
            else:
                cell = np.zeros((self.size[1], self.size[0], 3), dtype=np.uint8)
                cell[dy : dy + h, dx : dx + w] = self._scale(self._next, w, h)
                self._current = cell
            self._next = None
        if local > self._end:
            return None
        return self._current

    def close(self) -> None:
        self._container.close()


class _PcmReader:
    """One audio track as 48 kHz stereo s16, read in consecutive windows of the output."""

    def __init__(self, path: Path, offset: float) -> None:
        self.start = round(offset * AUDIO_RATE)
        self._container = _open(path)
        if not self._container.streams.audio:
            self._container.close()
            raise CompositeError(f"{path.name}: no audio stream")
        self._name = path.name
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE)
        self._chunks = self._decode()
        self._buf = np.zeros((0, 2), dtype=np.int16)
        self._pos = self.start  # output sample index of _buf[0]
        self._done = False

    def _decode(self) -> Iterator[np.ndarray]:
        stream = self._container.streams.audio[0]
        try:
            for frame in self._container.decode(stream):
                for out in self._resampler.resample(frame):
                    yield out.to_ndarray().reshape(-1, 2)
            for out in self._resampler.resample(None):
                yield out.to_ndarray().reshape(-1, 2)
        except av.error.FFmpegError as e:
            raise CompositeError(f"{self._name}: {e}") from None

    def read(self, at: int, n: int) -> np.ndarray:
        """Samples [at, at + n) of the output timeline (zeros outside the track)."""
        out = np.zeros((n, 2), dtype=np.int16)
        if at + n <= self.start:
            return out
        while not self._done and self._pos + len(self._buf) < at + n:
            try:
                self._buf = np.concatenate([self._buf, next(self._chunks)])
            except StopIteration:
                self._done = True
        lo = max(at, self._pos)
        hi = min(at + n, self._pos + len(self._buf))
        if hi > lo:
            out[lo - at : hi - at] = self._buf[lo - self._pos : hi - self._pos]
        drop = max(0, at + n - self._pos)
        drop = min(drop, len(self._buf))
        self._buf = self._buf[drop:]
        self._pos += drop
        return out

    def close(self) -> None:
        self._container.close()


# -- compose ----------------------------------------------------------------------------------


def output_path(recordings_dir: Path, session_id: int) -> Path:
    return recordings_dir / f"composite-{session_id}.mp4"


def compose(
    tracks: list[Track],
    people: list[Person],
    out: Path,
    *,
    tz: ZoneInfo,
    size: tuple[int, int] | None = None,
    progress: Callable[[float], None] | None = None,
    speech: SpeechMeter | None = None,
) -> float:
    """Compose `tracks` into `out` (MP4); returns the composite's duration in seconds.

    `people` orders the grid (at most 9 cells; a person without tracks still gets a cell).
    `progress` is called with the fraction done about once per second of media; it may raise
    (CompositeCancelled) to stop. Raises CompositeError if a track cannot be read; `out` is
    then not created. `speech`, if given, is fed every audio track's PCM as it is mixed (the
    speaker timeline: server.sessions.speech), so no track is decoded twice.
    """
    if not tracks:
        raise CompositeError("no recordings to compose")
    known = {p.identity for p in people}
    people = list(people) + [
        Person(i, i, "") for i in dict.fromkeys(t.identity for t in tracks) if i not in known
    ]
    people = people[:9]
    width, height = size or pick_size(len(people))
    rects = cells(len(people), width, height)
    t0 = min(t.started_at for t in tracks)
    offs = offsets([t.started_at for t in tracks])
    total = total_duration(tracks)
    index = {p.identity: i for i, p in enumerate(people)}

    videos: dict[int, list[_VideoReader]] = {}
    audios: list[_PcmReader] = []
    audio_ids: list[str] = []
    readers: list[_VideoReader | _PcmReader] = []
    part = out.with_name(out.name + ".part")
    try:
        for track, off in zip(tracks, offs, strict=True):
            if track.kind == "audio":
                a = _PcmReader(track.path, off)
                readers.append(a)
                audios.append(a)
                audio_ids.append(track.identity)
            elif track.identity in index:
                cell = index[track.identity]
                v = _VideoReader(
                    track.path, off, (rects[cell][2], rects[cell][3]), track.duration_s
                )
                readers.append(v)
                videos.setdefault(cell, []).append(v)

        cap_size = max(12, rects[0][3] // 14)
        captions = [
            _label(f"{p.name}{' · ' + ROLE_ZH.get(p.role, p.role) if p.role else ''}", cap_size)
            for p in people
        ]
        background = np.zeros((height, width, 3), dtype=np.uint8)
        for (x, y, w, h), p in zip(rects, people, strict=True):
            name = _label(p.name, max(14, h // 9))
            _blend(background, name, x + (w - name.shape[1]) // 2, y + (h - name.shape[0]) // 2)
        clock_size = max(12, height // 24)
        clocks: dict[str, np.ndarray] = {}

        container = av.open(str(part), "w", format="mp4", options={"movflags": "+faststart"})
        try:
            vs = container.add_stream("libx264", rate=FPS)
            vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
            vs.options = {"preset": PRESET, "crf": "26", "tune": "zerolatency"}
            vs.codec_context.time_base = Fraction(1, FPS)
            aus = container.add_stream("aac", rate=AUDIO_RATE, layout="stereo")
            aus.bit_rate = 96_000
            n_frames = max(1, math.ceil(total * FPS))
            n_samples = max(AAC_FRAME, math.ceil(total * AUDIO_RATE))
            audio_at = 0
            for i in range(n_frames):
                t = i / FPS
                canvas = background.copy()
                for cell, (x, y, w, h) in enumerate(rects):
                    for reader in videos.get(cell, ()):
                        img = reader.frame_at(t)
                        if img is not None:
                            canvas[y : y + h, x : x + w] = img
                            break
                    _blend(canvas, captions[cell], x + 4, y + h - captions[cell].shape[0] - 4)
                text = clock_text(t0, t, tz)
                if text not in clocks:
                    clocks.clear()
                    clocks[text] = _label(text, clock_size)
                clock = clocks[text]
                _blend(canvas, clock, width - clock.shape[1] - 4, 4)
                frame = av.VideoFrame.from_ndarray(canvas, format="rgb24")
                frame.pts = i
                container.mux(vs.encode(frame))
                until = min(n_samples, math.ceil((i + 1) / FPS * AUDIO_RATE))
                while audio_at < until:
                    chunks = [a.read(audio_at, AAC_FRAME) for a in audios]
                    if speech is not None:
                        for identity, chunk in zip(audio_ids, chunks, strict=True):
                            speech.add(identity, audio_at, chunk)
                    pcm = mix(chunks) if audios else np.zeros((AAC_FRAME, 2), dtype=np.int16)
                    af = av.AudioFrame.from_ndarray(
                        np.ascontiguousarray(pcm.reshape(1, -1)), format="s16", layout="stereo"
                    )
                    af.sample_rate = AUDIO_RATE
                    af.pts = audio_at
                    af.time_base = Fraction(1, AUDIO_RATE)
                    container.mux(aus.encode(af))
                    audio_at += AAC_FRAME
                if progress is not None and i % FPS == 0:
                    progress(i / n_frames)
            container.mux(vs.encode(None))
            container.mux(aus.encode(None))
        finally:
            container.close()
        os.replace(part, out)
    except Exception:
        part.unlink(missing_ok=True)
        raise
    finally:
        for r in readers:
            r.close()
    if progress is not None:
        progress(1.0)
    return total
