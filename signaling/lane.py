"""Negotiation for one participant, strictly in order, on the room's owner node: the client's
offers, answers and candidates and the media node's renegotiation offers share one queue.

    RoomActor ──put(step)──► Lane queue ──► MediaNode (accept_offer, accept_answer, ...)
                                  └──► send_to(peer): server_answer, server_offer, ack, error
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal, Protocol

from media.errors import MediaFailure
from media.interfaces import IceServer, MediaNode, PublishGrant, SessionDescription
from server.kernel.errors import AppError
from server.kernel.logging import peer_id_var, room_id_var
from server.kernel.tasks import cancel_and_wait
from signaling import errors
from signaling.protocol import (
    Ack,
    Error,
    IceServerInfo,
    ServerAnswer,
    ServerMessage,
    ServerOffer,
    TrackKind,
    error_message,
)
from signaling.room import Room

logger = logging.getLogger(__name__)

#: What a lane does next: the client's `offer`/`answer`/`candidate`, the media node's
#: `server_offer`, or `resend_offer` (the participant resumed on a new socket).
Step = Literal["offer", "answer", "candidate", "server_offer", "resend_offer"]


class LaneHost(Protocol):
    """What a lane needs from its room (the `RoomActor`)."""

    @property
    def room_id(self) -> str: ...

    @property
    def room(self) -> Room: ...

    @property
    def media(self) -> MediaNode: ...

    #: Participants who chose audio only.
    video_off: set[str]

    def ice_servers(self, identity: str) -> list[IceServerInfo]: ...

    def send_to(self, peer_id: str, msg: ServerMessage) -> None: ...


def _media_error(exc: MediaFailure, re: str | None) -> Error:
    return Error(
        re=re,
        code=exc.code,
        message=str(exc) or exc.code,
        message_zh=getattr(exc, "message_zh", None) or errors.MediaUnavailable.message_zh,
    )


class Lane:
    """Negotiation for one participant, strictly in order: client offers, answers, candidates
    and the media node's renegotiation offers share one queue."""

    def __init__(
        self, host: LaneHost, peer_id: str, *, queue_size: int, negotiation_timeout_s: float
    ) -> None:
        self.host = host
        self.peer_id = peer_id
        self.negotiation_timeout_s = negotiation_timeout_s
        self.queue: asyncio.Queue[tuple[Step, Any, str | None]] = asyncio.Queue(maxsize=queue_size)
        self.has_peer = False
        self.pending_server_offer = False
        #: The media node's last offer to this participant, until answered.
        self.server_offer_sdp = ""
        self.task = asyncio.create_task(self._run(), name=f"lane:{host.room_id}:{peer_id}")

    def put(self, kind: Step, payload: Any, re: str | None) -> bool:
        try:
            self.queue.put_nowait((kind, payload, re))
            return True
        except asyncio.QueueFull:
            return False

    async def close(self) -> None:
        await cancel_and_wait([self.task])

    async def _run(self) -> None:
        room_id_var.set(self.host.room_id)
        peer_id_var.set(self.peer_id)
        while True:
            kind, payload, re = await self.queue.get()
            try:
                async with asyncio.timeout(self.negotiation_timeout_s):
                    await self._step(kind, payload, re)
            except asyncio.CancelledError:
                raise
            except AppError as e:
                self.host.send_to(self.peer_id, error_message(e, re))
            except MediaFailure as e:
                self.host.send_to(self.peer_id, _media_error(e, re))
            except TimeoutError:
                self.host.send_to(
                    self.peer_id,
                    error_message(
                        errors.MediaUnavailable("the media server did not answer in time"), re
                    ),
                )
            except Exception:
                logger.exception("negotiation step %s failed", kind)
                self.host.send_to(
                    self.peer_id,
                    error_message(errors.MediaUnavailable("negotiation failed"), re),
                )

    async def _step(self, kind: Step, payload: Any, re: str | None) -> None:
        host, media = self.host, self.host.media
        if kind == "offer":
            m = host.room.members.get(self.peer_id)
            if m is None or m.status != "joined":
                raise errors.NotJoined("wait until you are admitted before sending media")
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("offer sdp: %s", payload)
            answer = await media.accept_offer(
                room_id=host.room_id,
                peer_id=self.peer_id,
                offer=SessionDescription("offer", payload),
                ice_servers=[
                    IceServer(tuple(s.urls), s.username, s.credential)
                    for s in host.ice_servers(m.spec.identity)
                ],
                grant=PublishGrant(
                    audio="audio" in m.spec.permissions,
                    video="video" in m.spec.permissions,
                    screen="screen" in m.spec.permissions,
                ),
            )
            self.has_peer = True
            self.pending_server_offer = False
            self.server_offer_sdp = ""
            forced: list[TrackKind] = []
            if m.forced_audio:
                forced.append("audio")
            if m.forced_video:
                forced.append("video")
            for track_kind in forced:
                await media.set_forwarding(
                    room_id=host.room_id, peer_id=self.peer_id, kind=track_kind, enabled=False
                )
            if self.peer_id in host.video_off:  # audio only, chosen before this connection
                await media.set_receive_video(
                    room_id=host.room_id, peer_id=self.peer_id, enabled=False
                )
            host.send_to(self.peer_id, ServerAnswer(re=re or "", sdp=answer.sdp))
        elif kind == "answer":
            if not self.pending_server_offer:
                raise errors.OutOfOrder("an answer needs a server offer first")
            await media.accept_answer(
                room_id=host.room_id,
                peer_id=self.peer_id,
                answer=SessionDescription("answer", payload),
            )
            self.pending_server_offer = False
            self.server_offer_sdp = ""
            host.send_to(self.peer_id, Ack(re=re or ""))
        elif kind == "candidate":
            if not self.has_peer:
                raise errors.OutOfOrder("send an offer before ICE candidates")
            await media.add_candidate(room_id=host.room_id, peer_id=self.peer_id, candidate=payload)
            host.send_to(self.peer_id, Ack(re=re or ""))
        elif kind == "server_offer":
            self.pending_server_offer = True
            self.server_offer_sdp = payload
            host.send_to(self.peer_id, ServerOffer(sdp=payload))
        elif kind == "resend_offer" and self.pending_server_offer and self.server_offer_sdp:
            # The participant resumed on a new socket and keeps its peer connection: an offer
            # sent while it was away (or into the socket that dropped) is offered again, or its
            # subscriptions would wait for an answer that never comes.
            host.send_to(self.peer_id, ServerOffer(sdp=self.server_offer_sdp))
