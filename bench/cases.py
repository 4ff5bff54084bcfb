"""Case-file benchmark (not CI): list/filter/search latency and the deadline sweep over a
bulk-loaded PostgreSQL database, plus intake throughput.

    python -m bench cases --scale 1      # 1,000,000 cases (several minutes to load)

Rows are bulk-loaded with INSERT … SELECT generate_series, never through the ORM.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text

from bench.common import check, percentile, smoke

PG = os.environ.get("ONEDOOR_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
NOW = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
#: Every check this benchmark reports (bench.common marks one it could not measure).
CHECKS = (
    "case_query_p95_ms",
    "deadline_sweep_s",
    "outbox_messages_per_s",
    "intake_per_s",
)
TIMEOUT = (300.0, 3600.0)  # overall bound in s: fixed + per unit of scale

PHRASES = [
    "拖欠工资",
    "物业费纠纷",
    "电梯故障",
    "噪声扰民",
    "违章搭建",
    "低保申请",
    "食品安全",
    "房屋漏水",
    "征迁补偿",
    "社保缴纳",
    "医疗纠纷",
    "邻里矛盾",
    "停车收费",
    "油烟扰民",
    "预付卡退费",
    "养老补贴",
    "占道经营",
    "规划用地",
    "劳动合同",
    "虚假宣传",
]
PLACES = [
    "和睦新村",
    "大关小区",
    "米市巷",
    "湖墅南路",
    "祥符街道",
    "拱宸桥",
    "小河路",
    "半山",
    "康桥",
    "上塘",
    "石桥",
    "东新园",
    "德胜新村",
]


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


def _arr(values: list[str]) -> str:
    return "ARRAY[" + ",".join(f"'{v}'" for v in values) + "]"


async def _load(url: str, n: int) -> None:
    from server.demo.loader import load_demo
    from server.kernel.db import make_engine, make_sessionmaker

    engine = make_engine(url)
    async with make_sessionmaker(engine).begin() as s:
        await load_demo(s, password="bench-pass-2026")
    async with engine.begin() as conn:
        # GIN indexes are built once after the load, not row by row during it
        await conn.execute(text("DROP INDEX ix_petition_case_summary_trgm"))
        await conn.execute(text("DROP INDEX ix_petition_case_summary_bigram"))
        await conn.execute(
            text(f"""
            INSERT INTO petition_case (case_no, site_id, year, seq, channel, summary, matter_type,
                state, confidential, created_at, updated_at, registered_at, version, grade,
                review_level, collective, non_accept_proposed, attributes, lead_dept_id,
                first_receiver_id)
            SELECT 'B-' || i, 1 + (i % 105), 2025, i,
                   (ARRAY['window','kiosk','qr','web','agent','letter'])[1 + i % 6],
                   ({_arr(PLACES)})[1 + (i * 7) % {len(PLACES)}]
                   || ({_arr(PHRASES)})[1 + (i * 13) % {len(PHRASES)}]
                   || '问题反映第' || i || '号'
                   || ({_arr(PHRASES)})[1 + (i * 31) % {len(PHRASES)}],
                   NULL,
                   (ARRAY['registered','accepted','handling','replied','closed'])[1 + i % 5],
                   (i % 50 = 0), ts, ts, ts, 1, 'simple', 0, false, false, '{{}}',
                   1 + (i % 12), NULL
            FROM (SELECT i, TIMESTAMPTZ '2025-06-01' + (i * interval '30 seconds') AS ts
                  FROM generate_series(1, {n}) i) g
        """)
        )
        # one open deadline per case; 0.1 % cross a threshold at NOW
        await conn.execute(
            text(f"""
            INSERT INTO case_deadline (case_id, kind, start_at, base_due_at, due_at, status,
                warn_level, escalation_level, next_action_at, extension_days)
            SELECT id, 'handling', registered_at, registered_at + interval '60 days',
                   registered_at + interval '60 days', 'open', 'none', 0,
                   CASE WHEN id % 1000 = 0 THEN TIMESTAMPTZ '{(NOW - timedelta(hours=1)).isoformat()}'
                        ELSE TIMESTAMPTZ '{(NOW + timedelta(days=1)).isoformat()}'
                             + (id % 86400) * interval '1 second' END, 0
            FROM petition_case
        """)
        )
        await conn.execute(text("SET maintenance_work_mem = '256MB'"))
        await conn.execute(
            text(
                "CREATE INDEX ix_petition_case_summary_trgm ON petition_case "
                "USING gin (summary gin_trgm_ops)"
            )
        )
        await conn.execute(
            text(
                "CREATE INDEX ix_petition_case_summary_bigram ON petition_case "
                "USING gin (case_bigrams(summary))"
            )
        )
        await conn.execute(text("ANALYZE"))
    await engine.dispose()


async def run(scale: float = 1.0) -> dict[str, Any]:
    from server.auth.permissions import StaffIdentity
    from server.cases import deadline_service, intake, queries
    from server.cases.catalogue import load_case_reference
    from server.cases.deadline_clock import DeadlineClock
    from server.cases.models import Channel
    from server.cases.schemas import CaseQuery, IntakeRequest, PetitionerInput
    from server.cli import alembic_upgrade
    from server.kernel.crypto import PiiCipher
    from server.kernel.db import make_engine, make_sessionmaker
    from server.kernel.notify import LogNotifier
    from server.org.models import Role

    n = 200 if smoke(scale) else max(1000, int(1_000_000 * scale))
    db = f"bench_cases_{uuid.uuid4().hex[:8]}"
    _psql(f'CREATE DATABASE "{db}"')
    url = f"{PG}/{db}"
    try:
        await asyncio.to_thread(alembic_upgrade, url)
        t0 = time.perf_counter()
        await _load(url, n)
        load_s = time.perf_counter() - t0
        engine = make_engine(url)
        maker = make_sessionmaker(engine)
        supervisor = StaffIdentity(
            staff_id=1,
            username="b",
            display_name="b",
            site_id=1,
            department_id=None,
            roles=frozenset({Role.centre_supervisor}),
        )
        handler = StaffIdentity(
            staff_id=2,
            username="h",
            display_name="h",
            site_id=1,
            department_id=3,
            roles=frozenset({Role.dept_handler}),
        )
        searches = [
            (supervisor, CaseQuery(q="电梯故障")),
            (supervisor, CaseQuery(q="和睦新村拖欠工资")),
            (supervisor, CaseQuery(q="B-4242")),
            (supervisor, CaseQuery(state="handling")),
            (supervisor, CaseQuery(department_id=5, state="replied")),
            (supervisor, CaseQuery(site_id=17, q="噪声")),
            (handler, CaseQuery()),
            (handler, CaseQuery(q="物业费")),
            (
                supervisor,
                CaseQuery(
                    registered_from=datetime(2025, 7, 1, tzinfo=UTC),
                    registered_to=datetime(2025, 7, 2, tzinfo=UTC),
                ),
            ),
            (supervisor, CaseQuery(q="问题反映第77777号")),
        ]
        latencies: list[float] = []
        per_query: dict[str, float] = {}
        for rep in range(6):
            for i, (who, q) in enumerate(searches):
                async with maker() as s:
                    started = time.perf_counter()
                    await queries.list_cases(s, staff=who, query=q)
                    ms = (time.perf_counter() - started) * 1000
                if rep:  # first round warms the caches
                    latencies.append(ms)
                    per_query[f"q{i}"] = max(per_query.get(f"q{i}", 0.0), ms)
        async with maker.begin() as s:
            await load_case_reference(s)
        # The sweep as the job runner runs it (no notifier): warnings, overdue, escalations and
        # their messages queued; the outbox is then delivered as its own job table, timed apart
        # (one gateway call and one recorded result per message).
        started = time.perf_counter()
        report = await deadline_service.run_deadline_sweep(maker, now=NOW, notifier=None)
        sweep_s = time.perf_counter() - started
        started = time.perf_counter()
        delivered = await deadline_service.deliver_notifications(
            maker, notifier=LogNotifier(), now=NOW
        )
        deliver_s = time.perf_counter() - started
        outbox_per_s = delivered.sent / max(deliver_s, 1e-9)
        started = time.perf_counter()
        await deadline_service.run_deadline_sweep(maker, now=NOW, notifier=LogNotifier())
        idle_sweep_s = time.perf_counter() - started
        # intake throughput: concurrent registrations at one window
        pii = PiiCipher(secrets.token_bytes(32))
        window = StaffIdentity(
            staff_id=3,
            username="w",
            display_name="w",
            site_id=1,
            department_id=1,
            roles=frozenset({Role.window_officer}),
        )
        intakes = 5 if smoke(scale) else max(50, int(500 * scale))

        async def one(i: int) -> None:
            async with maker.begin() as s:
                await intake.intake(
                    s,
                    pii=pii,
                    staff=window,
                    now=NOW,
                    deadlines=DeadlineClock(),
                    request=IntakeRequest(
                        channel=Channel.window,
                        site_id=1,
                        summary=f"基准测试信访事项{i}",
                        petitioner=PetitionerInput(name="测试", phone=f"139{i:08d}"),
                    ),
                )

        sem = asyncio.Semaphore(20)

        async def bounded(i: int) -> None:
            async with sem:
                await one(i)

        started = time.perf_counter()
        await asyncio.gather(*(bounded(i) for i in range(intakes)))
        intake_s = time.perf_counter() - started
        await engine.dispose()
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    p95 = percentile(latencies, 95)
    return {
        "cases": n,
        "load_s": round(load_s, 1),
        "query_p50_ms": round(percentile(latencies, 50), 2),
        "case_query_p95_ms": round(p95, 2),
        "query_max_ms_by_query": per_query,
        "deadline_sweep_s": round(sweep_s, 3),
        "sweep_examined": report.examined,
        "sweep_warnings": report.warnings,
        "idle_sweep_s": round(idle_sweep_s, 3),
        "outbox_messages": delivered.sent,
        "outbox_deliver_s": round(deliver_s, 3),
        "outbox_messages_per_s": round(outbox_per_s, 1),
        "intakes": intakes,
        "intake_per_s": round(intakes / intake_s, 1),
        "checks": [
            check("case_query_p95_ms", p95, "<= 50", "ms"),
            check("deadline_sweep_s", sweep_s, "<= 2", "s"),
            check("outbox_messages_per_s", outbox_per_s, ">= 100", "1/s"),
            check("intake_per_s", intakes / intake_s, ">= 50", "1/s"),
        ],
    }


if __name__ == "__main__":
    import json

    print(
        json.dumps(
            asyncio.run(run(float(os.environ.get("SCALE", "0.01")))),
            indent=2,
            ensure_ascii=False,
            default=str,
        )
    )
