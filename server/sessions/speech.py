"""Who spoke when (the speaker timeline beside the 笔录, issue #20 item 2), from the audio level
of each participant's own recorded track: every participant is recorded on a separate track,
so no diarisation is needed. Pure numpy; fed by the composite job while it mixes the tracks
(server.sessions.composite.compose), so each track is decoded once.

A track's level is its RMS over 0.5 s windows (dBFS); a window above THRESHOLD_DBFS is speech.
Speech windows closer than MERGE_GAP_S are merged; intervals shorter than MIN_SPEECH_S dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

WINDOW_S = 0.5
THRESHOLD_DBFS = -40.0
MERGE_GAP_S = 1.0
MIN_SPEECH_S = 0.6


@dataclass(slots=True)
class SpeechMeter:
    """Sums of squares per track and window; `add` takes the s16 PCM the mixer reads."""

    rate: int = 48_000
    window_s: float = WINDOW_S
    _energy: dict[str, dict[int, list[float]]] = field(default_factory=dict)

    def add(self, identity: str, at_sample: int, pcm: np.ndarray) -> None:
        """`pcm`: int16 samples starting at output sample `at_sample`, one row (or value) per
        sample of time; split at window boundaries."""
        per_window = int(self.rate * self.window_s)
        windows = self._energy.setdefault(identity, {})
        x = pcm.astype(np.float64) / 32768.0
        at, i = at_sample, 0
        while i < len(x):
            n = min(len(x) - i, per_window - at % per_window)
            part = x[i : i + n]
            acc = windows.setdefault(at // per_window, [0.0, 0.0])
            acc[0] += float(np.sum(part * part))
            acc[1] += part.size
            at, i = at + n, i + n

    def intervals(
        self,
        *,
        threshold_dbfs: float = THRESHOLD_DBFS,
        merge_gap_s: float = MERGE_GAP_S,
        min_speech_s: float = MIN_SPEECH_S,
    ) -> dict[str, list[tuple[float, float]]]:
        """identity → [(start s, end s)] of speech, in output time (0 = the earliest track)."""
        out: dict[str, list[tuple[float, float]]] = {}
        for identity, windows in self._energy.items():
            spans: list[list[float]] = []
            for w in sorted(windows):
                total, n = windows[w]
                rms = math.sqrt(total / n) if n else 0.0
                if rms <= 0 or 20 * math.log10(rms) < threshold_dbfs:
                    continue
                start, end = w * self.window_s, (w + 1) * self.window_s
                if spans and start - spans[-1][1] <= merge_gap_s:
                    spans[-1][1] = end
                else:
                    spans.append([start, end])
            out[identity] = [(round(s, 2), round(e, 2)) for s, e in spans if e - s >= min_speech_s]
        return out
