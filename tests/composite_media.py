"""Short synthetic recordings like media/recorder.py writes them: VP8 or Opus in WebM."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def vp8_webm(path: Path, *, seconds: float, colour: tuple[int, int, int], fps: int = 15) -> Path:
    with av.open(str(path), "w", format="webm") as out:
        s = out.add_stream("libvpx", rate=fps)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.bit_rate = 300_000
        for i in range(round(seconds * fps)):
            img = np.empty((240, 320, 3), dtype=np.uint8)
            img[:] = colour
            img[(i * 4) % 220 : (i * 4) % 220 + 20, :40] = 255  # a moving block
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return path


def opus_webm(path: Path, *, seconds: float, freq: float = 440.0, amp: float = 0.3) -> Path:
    with av.open(str(path), "w", format="webm") as out:
        s = out.add_stream("libopus", rate=48_000, layout="stereo")
        n = 960
        for i in range(round(seconds * 50)):
            t = (np.arange(n) + i * n) / 48_000
            mono = (amp * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
            pcm = np.repeat(mono, 2).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
            frame.sample_rate = 48_000
            frame.pts = i * n
            frame.time_base = Fraction(1, 48_000)
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return path
