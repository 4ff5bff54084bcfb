"""Signaling for video reception and online mediation: the versioned WebSocket protocol
(`onedoor.v1`), rooms and roles, the lobby, moderation, presence and chat, join and resume
tokens, TURN credentials, recording consent, and the `SignalBus`/`RoomDirectory` that let several
nodes serve one deployment. Imports `server` (settings, errors, and the sessions, org, cases and
audit services; never a `*.models` module) and `media.interfaces`; only `ws.py`
imports aiohttp. Join tokens and the session record belong to `server.sessions`.

    browser ─WS─► ws.py ─► edge.Edge ──(envelopes, bus)──► owner.RoomActor ─► room.Room
                                                   ├─► lane.Lane ─► media.interfaces.MediaNode
                                                   ├─► store.Journal (events, audit, chat)
                                                   └─► bus.publish_event ─► subscribe_events()

- `protocol.py`: every client message (pydantic, discriminated unions), JSON Schema.
- `envelopes.py`: every node-to-node message (frozen dataclasses) and their JSON codec.
- `roomstate.py`: roles and permissions, participants, the saved `RoomState`, `Effects`.
- `room.py`: the pure state machine: lobby, official rule, moderation, consent; no I/O.
- `edge.py`: one client socket: limits, parsing, join and resume (through `EdgeContext`).
- `owner.py`: one room on its owner node: inbox, effects, grace periods (`OwnerContext`).
- `commands.py`: which `Room` operation each room-level client message asks for.
- `lane.py`: one participant's negotiation, in order.
- `node.py`: the node: leases, re-homing, saved room state, routing; the two contexts.
- `config.py`: `NodeConfig` and `Limits`.
- `bus.py`: `SignalBus` and `RoomDirectory` (leases, each room's saved state), in-process and
  Redis.
- `tokens.py`: resume tokens (PyJWT HS256), QR codes, TURN REST credentials.
- `store.py`: session lookups at join time and the write-behind journal, both through
  `server.sessions.service`.
- `ws.py`: aiohttp routes and cleanup contexts.
"""
