"""The server side of onedoor, in layers that import only downward (docs/architecture.md;
import-linter checks it in `make test`):

    composition root   app.py (create_app), cli.py (onedoor), middlewares.py, demo/,
                       backup.py, pii_rotation.py, models.py (every table, for alembic)
    edges              api/ (REST)  ·  ../web (pages)  ·  ../signaling (WebSocket)
    HTTP plumbing      http/ (AppKeys, request auth and CSRF, path parsing, OpenAPI registry)
    domains            queue/ dispatch/ ../scheduling  ─►  sessions/  ─►  cases/
                       ─►  auth/ : org/  ─►  audit/
    kernel             kernel/ (settings, db, errors, crypto, signing, clock, tasks, logging,
                       notify, ratelimit, metrics, jobs)

Domain modules never import aiohttp or an edge; each owns its entities (ORM rows never leave
its service).
"""
