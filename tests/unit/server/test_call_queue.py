"""One contract for both `CallQueue`s: the same test bodies run on the in-process queue and on
the Redis queue (real Redis, two clients standing for two nodes). Time is passed in, never
slept: expiry and the desk's thresholds are checked by moving `now`."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from server.kernel.crypto import PiiCipher
from server.kernel.errors import NotFound
from server.queue import (
    CallEntry,
    CallNotWaiting,
    CallQueue,
    CallState,
    CallTaken,
    InProcessCallQueue,
    QueuePolicy,
    RedisCallQueue,
)
from server.queue.service import (
    ABANDONED_AFTER,
    RETAIN,
    callback_booked,
    cancelled,
    claimed,
    ended,
    handed_over,
    invited,
    released,
    seen,
    with_case,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NAME, PHONE = "王五", "13912345678"
PII = PiiCipher(b"contract-test-secret-0123456789abcdef")


def entry(entry_id: int, *, at: datetime = T0, name: str = NAME) -> CallEntry:
    return CallEntry(
        id=entry_id,
        site_id=3,
        site_name="拱墅区米市巷街道",
        matter_code="wage_arrears",
        matter_name="拖欠工资",
        resident_name=name,
        resident_phone=PHONE,
        agent_id=7,
        agent_name="代办员甲",
        agent_present=True,
        waiting_since=at,
        session_id=100 + entry_id,
        room_id=f"room-{entry_id}",
        seen_at=at,
        expires_at=at + ABANDONED_AFTER,
    )


async def place(queue: CallQueue, *, at: datetime = T0, name: str = NAME) -> CallEntry:
    e = entry(await queue.next_id(), at=at, name=name)
    await queue.add(e, now=at)
    return e


def claim_by(officer_id: int, now: datetime = T0) -> Callable[[CallEntry], CallEntry]:
    return lambda e: claimed(e, officer_id=officer_id, officer_name=f"officer{officer_id}", now=now)


Nodes = tuple[CallQueue, CallQueue]


@pytest.fixture(params=["in_process", pytest.param("redis", marks=pytest.mark.integration)])
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[Nodes]:
    """The queue as two nodes see it: the same in-process queue twice, or two Redis queues on
    two connections with one prefix."""
    if request.param == "in_process":
        queue = InProcessCallQueue()
        yield queue, queue
        return
    url = str(request.getfixturevalue("redis_url"))
    prefix = str(request.getfixturevalue("redis_prefix"))
    clients = [Redis.from_url(url), Redis.from_url(url)]
    try:
        yield (
            RedisCallQueue(clients[0], prefix=prefix, pii=PII),
            RedisCallQueue(clients[1], prefix=prefix, pii=PII),
        )
    finally:
        keys = [k async for k in clients[0].scan_iter(match=prefix + "*")]
        if keys:
            await clients[0].delete(*keys)
        for client in clients:
            await client.aclose()


async def test_placed_calls_are_listed_oldest_first_on_every_node(nodes: Nodes) -> None:
    a, b = nodes
    late = await place(a, at=T0 + timedelta(seconds=30), name="李四")
    early = await place(b, at=T0, name="张三")
    same_time = await place(a, at=T0, name="赵六")
    now = T0 + timedelta(seconds=40)
    for node in (a, b):
        listed = await node.entries(now=now)
        assert [e.id for e in listed] == [early.id, same_time.id, late.id]
        assert listed == [early, same_time, late]  # every field survives the round trip
        assert await node.get(late.id, now=now) == late


async def test_ids_are_unique_across_nodes(nodes: Nodes) -> None:
    a, b = nodes
    ids = await asyncio.gather(*(node.next_id() for node in (a, b) * 10))
    assert len(set(ids)) == 20


async def test_two_officers_on_two_nodes_accept_one_call_exactly_once(nodes: Nodes) -> None:
    a, b = nodes
    call = await place(a)
    assert await b.entries(now=T0) == [call]  # both connections are open: a real race
    results = await asyncio.gather(
        a.update(call.id, claim_by(1), now=T0),
        b.update(call.id, claim_by(2), now=T0),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, CallEntry)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], CallTaken)
    assert lost[0].code == "call_taken" and lost[0].http_status == 409
    for node in (a, b):
        stored = await node.get(call.id, now=T0)
        assert stored.state == CallState.accepted
        assert stored.accepted_by_id == won[0].accepted_by_id


async def test_many_concurrent_accepts_have_one_winner(nodes: Nodes) -> None:
    a, b = nodes
    calls = [await place(b) for _ in range(10)]
    await asyncio.gather(a.entries(now=T0), b.entries(now=T0))  # both connections are open
    for call in calls:
        attempts = [(a, b)[i % 2].update(call.id, claim_by(i), now=T0) for i in range(1, 7)]
        results = await asyncio.gather(*attempts, return_exceptions=True)
        assert sum(isinstance(r, CallEntry) for r in results) == 1, results
        assert sum(isinstance(r, CallTaken) for r in results) == 5, results


async def test_a_failed_change_writes_nothing(nodes: Nodes) -> None:
    a, b = nodes
    call = await place(a)
    accepted = await a.update(call.id, claim_by(1), now=T0)
    with pytest.raises(CallNotWaiting):
        await b.update(call.id, lambda e: cancelled(e, now=T0), now=T0)
    assert await a.get(call.id, now=T0) == accepted


async def test_cancel_and_call_back_only_while_waiting(nodes: Nodes) -> None:
    a, b = nodes
    one, two = await place(a), await place(a)
    gone = await b.update(one.id, lambda e: cancelled(e, now=T0), now=T0)
    assert gone.state == CallState.cancelled and gone.ended_at == T0
    booked = await b.update(
        two.id, lambda e: callback_booked(e, callback_at="明天上午", now=T0), now=T0
    )
    assert (booked.state, booked.callback_at) == (CallState.callback, "明天上午")
    changes: list[Callable[[CallEntry], CallEntry]] = [claim_by(3), lambda e: cancelled(e, now=T0)]
    for change in changes:
        with pytest.raises((CallTaken, CallNotWaiting)):
            await a.update(two.id, change, now=T0)
    assert (await a.get(two.id, now=T0)).state == CallState.callback


async def test_reception_changes_are_seen_by_the_other_node(nodes: Nodes) -> None:
    a, b = nodes
    call = await place(a)
    await b.update(call.id, claim_by(1), now=T0)
    await a.update(call.id, lambda e: invited(e, staff_id=8, note="请协助", now=T0), now=T0)
    await b.update(call.id, lambda e: handed_over(e, staff_id=9, note="", now=T0), now=T0)
    stored = await a.get(call.id, now=T0)
    assert (stored.invited_ids, stored.assigned_to_id, stored.handover_note) == (
        frozenset({8}),
        9,
        "请协助",
    )
    done = await a.update(call.id, lambda e: ended(e, outcome="answered", now=T0), now=T0)
    assert (await b.get(call.id, now=T0)) == done and done.state == CallState.ended


async def test_an_abandoned_call_expires_and_polling_keeps_it(nodes: Nodes) -> None:
    a, b = nodes
    kept, abandoned = await place(a), await place(a)
    almost = T0 + ABANDONED_AFTER - timedelta(seconds=1)
    await b.update(kept.id, lambda e: seen(e, almost), now=almost)  # the call page polled
    later = T0 + ABANDONED_AFTER
    for node in (a, b):
        assert [e.id for e in await node.entries(now=later)] == [kept.id]
        with pytest.raises(NotFound):
            await node.get(abandoned.id, now=later)
    with pytest.raises(NotFound):
        await b.update(abandoned.id, claim_by(1, later), now=later)
    # An answered call no longer needs polling; an ended one stays a short while.
    accepted = await a.update(kept.id, claim_by(1, later), now=later)
    assert (await b.entries(now=later + timedelta(hours=1))) == [accepted]
    end_at = later + timedelta(hours=1)
    await b.update(kept.id, lambda e: ended(e, outcome="answered", now=end_at), now=end_at)
    assert len(await a.entries(now=end_at + RETAIN[CallState.ended] - timedelta(seconds=1))) == 1
    assert await a.entries(now=end_at + RETAIN[CallState.ended]) == []


async def test_a_released_call_waits_again_for_anyone(nodes: Nodes) -> None:
    a, b = nodes
    call = await place(a)
    await a.update(call.id, claim_by(1), now=T0)
    await a.update(call.id, lambda e: with_case(e, case_id=5, case_no="C-5", now=T0), now=T0)
    kept = await b.update(call.id, lambda e: released(e, officer_id=2, now=T0), now=T0)
    assert kept.state == CallState.accepted  # only the officer who holds it lets it go
    back = await b.update(call.id, lambda e: released(e, officer_id=1, now=T0), now=T0)
    assert (back.state, back.accepted_by_id, back.case_id, back.case_no) == (
        CallState.waiting,
        None,
        None,
        "",
    )
    assert (await b.update(call.id, claim_by(2), now=T0)).accepted_by_id == 2


async def test_unknown_calls_are_not_found(nodes: Nodes) -> None:
    a, _b = nodes
    with pytest.raises(NotFound):
        await a.get(999, now=T0)
    with pytest.raises(NotFound):
        await a.update(999, claim_by(1), now=T0)


@pytest.mark.integration
async def test_redis_holds_no_plaintext_personal_data_and_expires_keys(
    redis_url: str, redis_prefix: str
) -> None:
    client = Redis.from_url(redis_url)
    try:
        queue = RedisCallQueue(client, prefix=redis_prefix, pii=PII)
        call = await place(queue)
        await queue.update(
            call.id, lambda e: invited(e, staff_id=8, note="王五的电话13912345678", now=T0), now=T0
        )
        keys = sorted([k.decode() async for k in client.scan_iter(match=redis_prefix + "*")])
        assert keys == [
            f"{redis_prefix}queue:entry:{call.id}",
            f"{redis_prefix}queue:order",
            f"{redis_prefix}queue:seq",
        ]
        raw = await client.get(keys[0])
        assert isinstance(raw, bytes)
        text = raw.decode()
        assert NAME not in text and PHONE not in text and "5678" not in text
        assert "拖欠工资" in text  # the rest stays readable for operators
        assert await client.pttl(keys[0]) > 0  # Redis drops abandoned entries by itself
        # Another deployment secret cannot read the entry.
        other = RedisCallQueue(client, prefix=redis_prefix, pii=PiiCipher(b"x" * 32))
        with pytest.raises(Exception, match="decrypt"):
            await other.get(call.id, now=T0)
    finally:
        leftover = [k async for k in client.scan_iter(match=redis_prefix + "*")]
        if leftover:
            await client.delete(*leftover)
        await client.aclose()


def test_desk_thresholds_follow_the_clock() -> None:
    policy = QueuePolicy(flag_after_s=180, callback_after_s=600)
    call = entry(1)
    at = {s: T0 + timedelta(seconds=s) for s in (0, 179, 180, 599, 600)}
    assert [call.flagged(policy, t) for t in at.values()] == [False, False, True, True, True]
    offered = [call.callback_offered(policy, t) for t in at.values()]
    assert offered == [False, False, False, False, True]
    assert call.public(policy, at[600])["waited_s"] == 600
    accepted = dataclasses.replace(call, state=CallState.accepted)
    assert not accepted.flagged(policy, at[600]) and not accepted.callback_offered(policy, at[600])
