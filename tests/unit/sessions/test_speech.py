"""The speaker timeline's level meter (server.sessions.speech): speech windows by RMS, merged
across short pauses, short bursts dropped; per track."""

from __future__ import annotations

import numpy as np

from server.sessions.speech import SpeechMeter

RATE = 48_000
CHUNK = 1024


def _feed(meter: SpeechMeter, identity: str, signal: np.ndarray) -> None:
    for at in range(0, len(signal), CHUNK):
        meter.add(identity, at, signal[at : at + CHUNK])


def _tone(seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amp * 32767 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), dtype=np.int16)


def test_speech_intervals_per_track_merged_over_short_pauses() -> None:
    meter = SpeechMeter()
    # speaks 0-2 s, pauses 0.5 s (merged), speaks to 3.5 s, silent, speaks 6-7 s
    _feed(meter, "a", np.concatenate([_tone(2), _silence(0.5), _tone(1), _silence(2.5), _tone(1)]))
    _feed(meter, "b", _silence(7))
    got = meter.intervals()
    assert got["a"] == [(0.0, 3.5), (6.0, 7.0)]
    assert got["b"] == []


def test_a_click_is_not_speech_and_quiet_noise_is_not_either() -> None:
    meter = SpeechMeter()
    quiet = (np.random.default_rng(1).normal(0, 0.002 * 32767, 4 * RATE)).astype(np.int16)
    _feed(meter, "room", quiet)
    _feed(meter, "click", np.concatenate([_silence(1.2), _tone(0.1), _silence(2)]))
    got = meter.intervals()
    assert got["room"] == [] and got["click"] == []
