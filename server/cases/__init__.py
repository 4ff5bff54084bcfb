"""Case files (信访件): intake, lifecycle, deadlines, evaluation, agreements, exchange.
Imports the kernel, `server.org`, `server.auth` and `server.audit`; never aiohttp or an edge.

    intake ──► queries ──► access          (who may see a case: one place)
    lifecycle ─┬► intake, queries, access, evaluation
               └► deadline_clock ──► outbox ◄── deadline_sweep ◄── deadline_service (runner,
                                                                     outbox delivery)
"""
