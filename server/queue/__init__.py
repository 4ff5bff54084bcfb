"""The live queue of community-point video calls waiting for the district centre (连线区信访超市).

May import the kernel (db, errors, crypto), `server.cases`, `server.audit`, `server.auth`, and
redis; never aiohttp, never an edge (signaling, web, api).

    community agent ──enqueue──► QueueService ◄──entries/accept── reception desk (any node)
                                   │    │
                 ReceptionRooms ◄──┘    └──► CallQueue: InProcessCallQueue (one node)
       (session store, wired in app.py)                RedisCallQueue (all nodes, atomic updates,
                                                       PII encrypted, entries expire)

accept: claim (exactly once across nodes) → create_case(first receiver = accepting officer)
        → ReceptionRooms.link_case (the reception session now belongs to the case)
"""

from server.queue.service import (
    STATE_LABELS,
    CallEntry,
    CallNotWaiting,
    CallQueue,
    CallState,
    CallTaken,
    QueuePolicy,
    QueueService,
    ReceptionRoom,
    ReceptionRooms,
)
from server.queue.store import InProcessCallQueue, QueueBusy, RedisCallQueue

__all__ = [
    "STATE_LABELS",
    "CallEntry",
    "CallNotWaiting",
    "CallQueue",
    "CallState",
    "CallTaken",
    "InProcessCallQueue",
    "QueueBusy",
    "QueuePolicy",
    "QueueService",
    "ReceptionRoom",
    "ReceptionRooms",
    "RedisCallQueue",
]
