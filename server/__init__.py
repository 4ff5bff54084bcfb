"""The composition root and the core services: `create_app(settings)` wires every package.

Settings (`ONEDOOR_*`), the error root, the database (one declarative Base, alembic), staff
sign-in and the one permission table, the hash-chained audit log, personal-data encryption,
the organisation (sites, departments, resources, staff), case files, the REST API, operations
endpoints and the `onedoor` command. Domain modules never import aiohttp; only `app.py`,
`middlewares.py`, `auth/web.py` and `api/` do.

    cli.serve ─► app.create_app(settings) ─┬─► api/ (REST, /healthz, /readyz, /metrics, openapi)
                                           ├─► web.setup (pages)
                                           ├─► signaling.ws.setup (WebSocket) ─► media
                                           └─► cleanup contexts: db, redis, notifier,
                                               deadline sweeper, reminder runner
    org/ cases/ dispatch/ queue/ audit/ auth/ ─► db (SQLAlchemy 2 async) ◄─ migrations/
"""
