"""The sessions domain: every reception or mediation session (a signaling room), its
lifecycle, join tokens, participants, events, chat and recordings. Imports the kernel
(`server.kernel.db`, `server.kernel.errors`) and the audit service; never aiohttp, never an edge.

    signaling ─┐                         ┌─► CallSession (scheduled → lobby → live → ended, …)
    scheduling ├─► service.py (the only  ├─► JoinToken (tokens.py signs and verifies)
    queue/desk │    writer; views from   └─► SessionEvent, SessionParticipant, ChatMessage,
    api, web  ─┘    schemas.py)              Recording (the journal's records)
"""
