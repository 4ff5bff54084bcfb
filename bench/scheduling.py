"""Scheduling benchmark on PostgreSQL (not CI): slot search latency over a bulk-loaded
district, and booking throughput under contention.

`python -m bench scheduling [--scale S]`. Scale 1.0: 1,000 staff, 200 resources and 100,000
existing bookings (claims), loaded with generate_series.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import subprocess
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from bench.common import check, percentile, smoke

NOW = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)  # Monday 08:00 in Hangzhou
TZ = "Asia/Shanghai"
STAFF = 1000
RESOURCES = 200
BOOKINGS = 100_000
#: Every check this benchmark reports (bench.common marks one it could not measure).
CHECKS = (
    "slot_search_p95_ms",
    "booking_attempts_per_s",
    "overlapping_claims",
    "unexpected_errors",
)
TIMEOUT = (300.0, 1800.0)  # overall bound in s: fixed + per unit of scale


def _psql(sql: str, db: str = "postgres") -> None:
    subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            db,
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            sql,
        ],
        check=True,
        capture_output=True,
    )


async def _load(url: str, n_bookings: int) -> dict[str, int]:
    from server.demo.loader import load_demo
    from server.kernel.db import make_engine, make_sessionmaker

    engine = make_engine(url)
    async with make_sessionmaker(engine).begin() as s:
        await load_demo(s, password="bench-pass-2026")
    async with engine.begin() as conn:
        have_staff = int((await conn.execute(text("SELECT count(*) FROM staff"))).scalar_one())
        have_res = int((await conn.execute(text("SELECT count(*) FROM resource"))).scalar_one())
        sites = int((await conn.execute(text("SELECT max(id) FROM site"))).scalar_one())
        depts = int((await conn.execute(text("SELECT max(id) FROM department"))).scalar_one())
        await conn.execute(
            text(f"""
            INSERT INTO staff (username, display_name, password_hash, site_id, department_id,
                               phone, active, failed_logins)
            SELECT 'bench' || i, '测试' || i, 'x', 1 + i % {sites}, 1 + i % {depts}, '', true, 0
            FROM generate_series(1, {max(STAFF - have_staff, 0)}) i""")
        )
        await conn.execute(
            text("""
            INSERT INTO staff_role (staff_id, role)
            SELECT id, CASE WHEN id % 5 = 0 THEN 'mediator' ELSE 'dept_handler' END
            FROM staff WHERE username LIKE 'bench%'""")
        )
        await conn.execute(
            text(f"""
            INSERT INTO resource (type, name, site_id, capacity, active)
            SELECT (ARRAY['mediation_room','video_terminal'])[1 + i % 2], '资源' || i,
                   1 + i % {sites}, 4, true
            FROM generate_series(1, {max(RESOURCES - have_res, 0)}) i""")
        )
        # Non-overlapping bookings per key: 09:00, 10:00, 14:00, 15:00 local on each day.
        for statement in (
            """CREATE TEMP TABLE bench_keys AS
            SELECT row_number() OVER () - 1 AS n, k FROM (
                SELECT 'staff:' || id AS k FROM staff UNION ALL
                SELECT 'resource:' || id FROM resource) x""",
            f"""INSERT INTO booking (id, status, start_at, end_at, request, reason, created_at)
            SELECT i, 'confirmed', s, s + interval '1 hour', '{{}}', '', s - interval '7 days'
            FROM (
                SELECT i, TIMESTAMPTZ '{NOW.isoformat()}' + interval '1 hour'
                       + ((i / (SELECT count(*) FROM bench_keys)) / 4) * interval '1 day'
                       + (ARRAY[0, 1, 5, 6])[1 + (i / (SELECT count(*) FROM bench_keys)) % 4]
                         * interval '1 hour' AS s
                FROM generate_series(1, {n_bookings}) i) g""",
            """INSERT INTO booking_claim (booking_id, resource_key, start_at, end_at)
            SELECT b.id, k.k, b.start_at, b.end_at
            FROM booking b JOIN bench_keys k
              ON k.n = b.id % (SELECT count(*) FROM bench_keys)""",
            """SELECT setval(pg_get_serial_sequence('booking', 'id'), (SELECT max(id) FROM booking))""",
            """ANALYZE""",
        ):
            await conn.execute(text(statement))
        counts = {
            "staff": int((await conn.execute(text("SELECT count(*) FROM staff"))).scalar_one()),
            "resources": int(
                (await conn.execute(text("SELECT count(*) FROM resource"))).scalar_one()
            ),
            "claims": int(
                (await conn.execute(text("SELECT count(*) FROM booking_claim"))).scalar_one()
            ),
        }
    await engine.dispose()
    return counts


async def run(scale: float = 1.0) -> dict[str, Any]:
    from sqlalchemy.ext.asyncio import create_async_engine

    from scheduling import loader, service
    from scheduling.schemas import BookingRequest, SlotQuery
    from server.cli import alembic_upgrade
    from server.kernel.crypto import PiiCipher
    from server.kernel.db import make_sessionmaker
    from server.kernel.errors import BookingConflict

    name = f"sched_bench_{os.getpid()}"
    _psql(f'DROP DATABASE IF EXISTS "{name}"')
    _psql(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    try:
        await asyncio.to_thread(alembic_upgrade, url)
        t0 = time.monotonic()
        counts = await _load(url, 200 if smoke(scale) else max(int(BOOKINGS * scale), 1000))
        load_s = time.monotonic() - t0
        engine = create_async_engine(url, pool_size=25, max_overflow=0)
        maker = make_sessionmaker(engine)
        async with maker() as s:
            streets = list(
                (await s.execute(text("SELECT id FROM site WHERE level='street' ORDER BY id")))
                .scalars()
                .all()
            )
            communities = list(
                (await s.execute(text("SELECT id FROM site WHERE level='community' ORDER BY id")))
                .scalars()
                .all()
            )
            depts = list((await s.execute(text("SELECT id FROM department"))).scalars().all())
        rng = random.Random(7)

        def query(i: int) -> SlotQuery:
            a, b = rng.sample(communities, 2)
            return SlotQuery.model_validate(
                {
                    "people": [{"role": "mediator", "department_id": depts[i % len(depts)]}],
                    "resources": [
                        {"type": "mediation_room", "site_ids": streets},
                        {"type": "video_terminal", "site_ids": [a]},
                        {"type": "video_terminal", "site_ids": [b]},
                    ],
                    "duration_min": 60,
                    "start": (NOW + timedelta(days=i % 10)).isoformat(),
                    "limit": 5,
                }
            )

        latencies: list[float] = []
        found = 0
        for i in range(70):
            q = query(i)
            t = time.perf_counter()
            async with maker() as s:
                slots = await loader.search_slots(s, query=q, now=NOW, tz=TZ)
            if i >= 10:  # warm-up
                latencies.append((time.perf_counter() - t) * 1000)
                found += len(slots)

        # Booking throughput under contention: 20 workers, 5 rooms, 3 days of mornings.
        pii = PiiCipher(secrets.token_bytes(32))
        async with maker() as s:
            rooms = list(
                (
                    await s.execute(
                        text(
                            "SELECT id FROM resource WHERE type='mediation_room' ORDER BY id LIMIT 5"
                        )
                    )
                )
                .scalars()
                .all()
            )
            mediators = list(
                (
                    await s.execute(
                        text(
                            "SELECT staff_id FROM staff_role WHERE role='mediator' ORDER BY staff_id "
                            "LIMIT 200"
                        )
                    )
                )
                .scalars()
                .all()
            )
        day0 = datetime.fromisoformat("2027-01-11T09:00:00+08:00")  # beyond the loaded bookings
        outcomes = {"ok": 0, "conflict": 0, "other": 0}
        attempts_per_worker = 2 if smoke(scale) else max(int(20 * scale), 5)

        async def worker(w: int) -> None:
            wr = random.Random(w)
            for _ in range(attempts_per_worker):
                start = day0 + timedelta(days=wr.randrange(3), minutes=30 * wr.randrange(5))
                req = BookingRequest.model_validate(
                    {
                        "start": start,
                        "end": start + timedelta(hours=1),
                        "staff": [{"staff_id": wr.choice(mediators)}],
                        "resources": [{"resource_id": wr.choice(rooms)}],
                    }
                )
                try:
                    async with maker.begin() as s:
                        await service.book(
                            s,
                            request=req,
                            actor="bench",
                            actor_staff_id=None,
                            now=NOW,
                            tz=TZ,
                            cipher=pii,
                        )
                    outcomes["ok"] += 1
                except BookingConflict:
                    outcomes["conflict"] += 1
                except Exception:
                    outcomes["other"] += 1

        t = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(20)))
        contention_s = time.perf_counter() - t
        attempts = sum(outcomes.values())
        async with maker() as s:
            overlaps = int(
                (
                    await s.execute(
                        text("""
                    SELECT count(*) FROM booking_claim a JOIN booking_claim b
                      ON a.resource_key = b.resource_key AND a.id < b.id
                     AND tstzrange(a.start_at, a.end_at) && tstzrange(b.start_at, b.end_at)""")
                    )
                ).scalar_one()
            )
        await engine.dispose()
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    p95 = percentile(latencies, 95)
    return {
        "scale": scale,
        "dataset": counts,
        "load_s": round(load_s, 1),
        "slot_search_ms": {
            "p50": round(percentile(latencies, 50), 2),
            "p95": round(p95, 2),
            "max": round(max(latencies), 2),
            "searches": len(latencies),
            "slots_found": found,
        },
        "contention": {
            "workers": 20,
            "attempts": attempts,
            **outcomes,
            "seconds": round(contention_s, 2),
            "attempts_per_s": round(attempts / contention_s, 1),
            "bookings_per_s": round(outcomes["ok"] / contention_s, 1),
            "overlapping_claims": overlaps,
        },
        "checks": [
            check("slot_search_p95_ms", p95, "<= 50", "ms"),
            check("booking_attempts_per_s", attempts / contention_s, ">= 50", "1/s"),
            check("overlapping_claims", overlaps, "<= 0", "count"),
            check("unexpected_errors", outcomes["other"], "<= 0", "count"),
        ],
    }


if __name__ == "__main__":
    import json

    print(json.dumps(asyncio.run(run(float(os.environ.get("SCALE", "1.0")))), indent=2))
