"""The media server's grade of what a participant sends reaches the others as part of that
participant (`participant_update`, field `upstream`), only when it changes (issue #18 item 8)."""

from __future__ import annotations

from signaling.protocol import ParticipantUpdate
from tests.unit.signaling.test_room_state import NOW, _fresh, spec


def test_a_senders_upstream_grade_goes_to_everyone_once_per_change() -> None:
    room = _fresh()
    room.enter(spec("p-h", "staff:1", "调解员", "host"), NOW)
    room.enter(spec("p-a", "guest:a", "张三", "party"), NOW)
    room.admit("p-h", "p-a", NOW)

    fx = room.upstream_quality("p-a", "poor")
    [(to, msg)] = fx.out
    assert sorted(to) == ["p-a", "p-h"]
    assert isinstance(msg, ParticipantUpdate)
    assert msg.participant.peer_id == "p-a"
    assert (msg.participant.upstream, msg.participant.quality) == ("poor", "unknown")
    assert room.upstream_quality("p-a", "poor").out == []  # no change, nothing sent
    [(_, lost)] = room.upstream_quality("p-a", "lost").out
    assert isinstance(lost, ParticipantUpdate) and lost.participant.upstream == "lost"
    assert room.upstream_quality("p-gone", "lost").out == []  # left meanwhile: ignored


def test_a_waiting_participants_grade_is_kept_but_not_sent() -> None:
    room = _fresh()
    room.enter(spec("p-h", "staff:1", "调解员", "host"), NOW)
    room.enter(spec("p-w", "guest:w", "李四", "party"), NOW)
    assert room.upstream_quality("p-w", "fair").out == []
    assert room.member("p-w").upstream == "fair"


def test_a_participant_who_sends_nothing_on_purpose_is_silent_not_lost() -> None:
    """`presence` with `sending: false` (no microphone, camera off): the media server's `lost`
    for it shows as `unknown`; once it sends again, a real loss of its link shows as `lost`."""
    room = _fresh()
    room.enter(spec("p-h", "staff:1", "调解员", "host"), NOW)
    room.enter(spec("p-a", "guest:a", "张三", "party"), NOW)
    room.admit("p-h", "p-a", NOW)
    room.presence("p-a", muted_audio=None, muted_video=None, quality=None, sending=False)
    assert room.upstream_quality("p-a", "lost").out == []  # nothing to tell: still unknown
    assert room.member("p-a").upstream == "unknown"
    [(_, update)] = room.presence(
        "p-a", muted_audio=None, muted_video=None, quality=None, sending=True
    ).out
    assert isinstance(update, ParticipantUpdate) and update.participant.upstream == "lost"
    [(_, good)] = room.upstream_quality("p-a", "good").out
    assert isinstance(good, ParticipantUpdate) and good.participant.upstream == "good"
