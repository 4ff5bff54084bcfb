"""The live queue of community-point video calls waiting for the district centre (连线区信访超市).

    community agent ──enqueue──► CallQueue ◄──list/claim── reception desk (window officer, coordinator)
                                     │
                  accept_call: claim → create_case(first receiver = accepting officer)
                                       → link the reception session (signaling room) to the case

`CallQueue` is a small Protocol; `InProcessCallQueue` keeps entries in memory (one node). A Redis
implementation can carry it for several nodes: `claim` must then be atomic across nodes (a Lua
script or WATCH/MULTI on the entry key), and the resident's name and phone must be stored
encrypted with the PII cipher (they are held only in memory here and never persisted by the
queue itself; the case created on accept stores them encrypted).
"""

from server.queue.service import (
    CallEntry,
    CallQueue,
    CallState,
    InProcessCallQueue,
    QueuePolicy,
    accept_call,
    enqueue_call,
)

__all__ = [
    "CallEntry",
    "CallQueue",
    "CallState",
    "InProcessCallQueue",
    "QueuePolicy",
    "accept_call",
    "enqueue_call",
]
