"""Signaling for video reception and online mediation: the versioned WebSocket protocol
(`onedoor.v1`), rooms and roles, the lobby, moderation, presence and chat, join and resume
tokens, TURN credentials, recording consent, and the `SignalBus`/`RoomDirectory` that let several
nodes serve one deployment. Imports `server` (settings, errors, and the sessions, org, cases and
audit services; never a `*.models` module) and `media.interfaces`; only `ws.py`
imports aiohttp. Join tokens and the session record belong to `server.sessions`.

    browser ─WS─► ws.py ─► node.Edge ──(bus)──► node.RoomActor ─► room.Room (pure state machine)
                                                     ├─► media.interfaces.MediaNode
                                                     ├─► store.Journal (SessionEvent, audit, chat)
                                                     └─► bus.publish_event ─► subscribe_events()

- `protocol.py`: every message (pydantic, discriminated unions), JSON Schema.
- `room.py`: participants, roles and permissions, lobby, official rule, consent; no I/O.
- `node.py`: edges, room actors, negotiation lanes, limits, grace period and re-homing.
- `bus.py`: `SignalBus` and `RoomDirectory` (leases, each room's saved state), in-process and
  Redis.
- `tokens.py`: resume tokens (PyJWT HS256), QR codes, TURN REST credentials.
- `store.py`: session lookups at join time and the write-behind journal, both through
  `server.sessions.service`.
- `ws.py`: aiohttp routes and cleanup contexts.
"""
