"""The kernel: what every layer may import (settings, db, errors, crypto, signing, tasks,
logging, notify, ratelimit, metrics, jobs). It imports no domain, no edge and no aiohttp."""
