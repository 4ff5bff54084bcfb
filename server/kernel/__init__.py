"""The kernel: what every layer may import (settings, db, errors, crypto, signing, clock, ids,
tasks, logging, notify, ratelimit, throttle, sqlite_gate, metrics, jobs). It imports no domain
and no edge; its only aiohttp use is the HTTP notifier's client session."""
