"""Active-speaker detection from RFC 6464 audio levels (no Opus decoding).

Each publisher's packets carry a level in -dBov (0 loudest, -127 silence). We keep a
short-window average per peer, taken over amplitude (10^(dBov/20)) rather than over dBov, so
speech with short pauses (or Chromium's beeping fake microphone) reads as loud, not as the
mean of loud and -127; `pick()` is called periodically and returns the loudest peer
above a threshold, switching only after the new speaker has led for `switch_after_s`
(debounce), so a cough does not flip the tile.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

SPEECH_THRESHOLD_DBOV = -50.0
LEVEL_WINDOW_S = 0.5


@dataclass(slots=True)
class _Levels:
    samples: list[tuple[float, int]] = field(default_factory=list)

    def add(self, now: float, level: int) -> None:
        self.samples.append((now, level))

    def mean(self, now: float) -> float:
        cutoff = now - LEVEL_WINDOW_S
        self.samples = [s for s in self.samples if s[0] >= cutoff]
        if not self.samples:
            return -127.0
        amplitude = sum(10 ** (level / 20) for _, level in self.samples) / len(self.samples)
        return max(-127.0, 20 * math.log10(amplitude)) if amplitude > 0 else -127.0


class SpeakerDetector:
    def __init__(self, *, switch_after_s: float = 0.6) -> None:
        self._levels: dict[str, _Levels] = {}
        self._switch_after_s = switch_after_s
        self.current: str | None = None
        self._candidate: str | None = None
        self._has_candidate = False  # the candidate itself may be None (silence)
        self._candidate_since = 0.0

    def add_level(self, peer_id: str, level_dbov: int, now: float | None = None) -> None:
        self._levels.setdefault(peer_id, _Levels()).add(
            time.monotonic() if now is None else now, level_dbov
        )

    def remove(self, peer_id: str) -> None:
        self._levels.pop(peer_id, None)

    def levels(self, now: float) -> dict[str, float]:
        return {peer: lv.mean(now) for peer, lv in self._levels.items()}

    def pick(self, now: float | None = None) -> tuple[bool, dict[str, float]]:
        """Return (changed, levels). `self.current` is the debounced active speaker."""
        now = time.monotonic() if now is None else now
        levels = self.levels(now)
        loud = {p: v for p, v in levels.items() if v >= SPEECH_THRESHOLD_DBOV}
        leader = max(loud, key=lambda p: loud[p]) if loud else None
        if leader == self.current:
            self._has_candidate = False
            return False, levels
        if not self._has_candidate or leader != self._candidate:
            self._candidate = leader
            self._has_candidate = True
            self._candidate_since = now
            return False, levels
        if now - self._candidate_since >= self._switch_after_s:
            self.current = leader
            self._has_candidate = False
            return True, levels
        return False, levels
