"""The end of a session is final (issue #16): once `session_ended` went out, every `join` and
`resume` for the room gets `session_closed`, also in the race right after the end while the
room's owner is still letting the room go, and after its in-memory state is gone."""

from __future__ import annotations

from aiohttp.test_utils import TestServer

from signaling.ws import node_key
from tests.component.signaling.conftest import MakeParticipant
from tests.component.signaling.harness import new_session, new_token
from tests.polling import eventually

ITERATIONS = 30


async def test_join_and_resume_right_after_the_end_are_refused_every_time(
    server: TestServer, people: MakeParticipant
) -> None:
    node = server.app[node_key]
    host = await people("host", "mediator01")
    guest, spare, late = await people("guest"), await people("spare"), await people("late")
    for i in range(ITERATIONS):
        sess = await new_session(host, title=f"调解 {i}")
        room_id = sess["room_id"]
        invite = await new_token(host, sess["id"], name="张三")
        other = await new_token(host, sess["id"], name="李四")
        await host.connect()
        await host.join(room_id)
        await guest.connect()
        await guest.join(room_id, token=invite["token"])
        # Sockets opened before the end, so their resume and join arrive at once after it.
        await spare.connect()
        await late.connect()

        end_id = await host.send("end_session")
        await host.expect("ack", re=end_id)
        resumed = await spare.send("resume", resume_token=guest.resume_token)
        joined = await late.send("join", room_id=room_id, token=other["token"])
        # The resident's own socket closes with the end; it resumes as the client does.
        await guest.expect("session_ended")
        assert await guest.expect_closed() == 4410, i
        assert await host.expect_closed() == 4410, i
        for p, msg_id in ((spare, resumed), (late, joined)):
            answer = await p.expect_where(lambda m, r=msg_id: m.get("re") == r)
            assert answer["type"] == "error", (i, answer)
            assert answer["code"] == "session_closed", (i, answer)
            assert p.seen("welcome") == [], i

        await guest.connect()
        again = await guest.request("resume", resume_token=guest.resume_token)
        assert again["code"] == "session_closed", (i, again)
        await host.connect()
        rejoin = await host.request("join", room_id=room_id)
        assert rejoin["code"] == "session_closed", (i, rejoin)

        def let_go(r: str = room_id) -> bool:
            return r not in node.rooms

        await eventually(let_go, what="the room let go")
        for p in (host, guest, spare, late):
            assert p.ws is not None
            await p.ws.close()

    # With the node's memory of ended rooms gone, the session record still says closed.
    node._ended.clear()
    await guest.connect()
    err = await guest.request("resume", resume_token=guest.resume_token)
    assert err["code"] == "session_closed"
