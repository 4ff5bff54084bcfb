"""The `onedoor` command: serve, db upgrade, demo load, user add, token, audit verify, evidence,
check, bench."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from server.kernel.settings import Settings, SettingsError, ensure_secret_key

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_upgrade(database_url: str, revision: str = "heads") -> None:
    """Build or update the schema with the migrations (the only way the schema changes)."""
    from alembic import command
    from alembic.config import Config

    if database_url.startswith("sqlite"):
        db_path = database_url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["url"] = database_url
    cfg.attributes["skip_logging"] = True
    command.upgrade(cfg, revision)


def _load_settings() -> Settings:
    try:
        return ensure_secret_key(Settings.from_env(os.environ))
    except SettingsError as e:
        print(f"onedoor: {e}", file=sys.stderr)
        raise SystemExit(2) from None


async def _with_session(settings: Settings, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run `fn` in one transaction, with the deployment's audit chain (its MAC keys and
    witnesses, Redis included when configured) on the session."""
    from redis.asyncio import Redis

    from server.audit.chain import chain_for
    from server.audit.chain import flush as flush_audit_witnesses
    from server.kernel.db import make_engine, make_sessionmaker

    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    engine = make_engine(settings.effective_database_url)
    chain = chain_for(settings, redis)
    try:
        async with make_sessionmaker(engine, info=chain.info()).begin() as session:
            result = await fn(session)
        await flush_audit_witnesses(chain)
        return result
    finally:
        await engine.dispose()
        if redis is not None:
            await redis.aclose()


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from server.app import create_app
    from server.kernel.logging import configure

    settings = serve_settings(_load_settings(), host=args.host, port=args.port)
    configure(settings.log_level, json_lines=settings.log_json)
    log = logging.getLogger(__name__)
    log.info("onedoor serving on http://%s:%s", settings.host, settings.port)
    if settings.public_url is None:
        log.info("links in invitations and SMS use %s", settings.effective_public_url)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        access_log=None,
        shutdown_timeout=10,
    )
    return 0


def serve_settings(settings: Settings, *, host: str | None, port: int | None) -> Settings:
    """The settings the server runs with: `--host`/`--port` override the environment, so the
    links it writes into invitations (without ONEDOOR_PUBLIC_URL) name the port it serves on."""
    return settings.model_copy(
        update={"host": host or settings.host, "port": port or settings.port}
    )


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = _load_settings()
    alembic_upgrade(settings.effective_database_url)
    print("database is at the latest migration")
    return 0


def cmd_demo_load(args: argparse.Namespace) -> int:
    from server.demo.loader import load_demo

    settings = _load_settings()
    result = asyncio.run(_with_session(settings, lambda s: load_demo(s, password=args.password)))
    if not result.created:
        print("demo organisation already loaded; nothing changed")
        return 0
    print(f"demo organisation loaded: {result.sites} sites, {result.staff} staff accounts")
    if args.password is None:
        print(f"demo password for every account (shown once): {result.password}")
        print(
            "accounts: window01 (窗口接待员), coord01 (协调员), agent001 (代办员), mediator01, "
            "supervisor01, leader01, handler01, expert01, sysadmin, secadmin, auditadmin"
        )
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    from server.audit.service import record
    from server.kernel.errors import AppError
    from server.org.models import Role
    from server.org.schemas import NewStaff
    from server.org.service import add_staff

    settings = _load_settings()
    password = args.password or getpass.getpass()
    try:
        roles = [Role(r) for r in args.roles.split(",") if r]
    except ValueError:
        print(
            f"onedoor: unknown role; choose from {', '.join(r.value for r in Role)}",
            file=sys.stderr,
        )
        return 2
    new = NewStaff(
        username=args.username,
        display_name=args.name or args.username,
        site_admin_code=args.site,
        department_code=args.department,
        roles=roles,
    )

    async def run(session: Any) -> Any:
        view = await add_staff(session, new=new, password=password)
        await record(
            session,
            actor="cli",
            action="staff.create",
            object_type="staff",
            object_id=str(view.id),
            detail={"roles": [str(r) for r in roles]},
        )
        return view

    try:
        view = asyncio.run(_with_session(settings, run))
    except AppError as e:
        print(f"onedoor: {e.code}: {e}", file=sys.stderr)
        return 1
    print(f"created staff {view.username} (id {view.id}) with roles {', '.join(view.roles)}")
    return 0


def cmd_holidays_load(args: argparse.Namespace) -> int:
    """Replace one year of the holiday calendar with a JSON file's (one transaction)."""
    from pathlib import Path

    from server.cases.holiday_calendar import load_year, parse_holiday_file
    from server.kernel.db import utcnow
    from server.kernel.errors import AppError

    settings = _load_settings()
    try:
        data = parse_holiday_file(Path(args.file).read_bytes())
    except OSError as e:
        print(f"onedoor: cannot read {args.file}: {e}", file=sys.stderr)
        return 2
    except AppError as e:
        print(f"onedoor: {e.code}: {e.message_zh}: {e.details.get('reason', e)}", file=sys.stderr)
        return 1

    async def run(session: Any) -> int:
        return await load_year(session, data=data, actor="cli", now=utcnow())

    count = asyncio.run(_with_session(settings, run))
    note = " (provisional: replace when the State Council notice is published)"
    print(f"loaded {count} days for {data.year}{note if data.provisional else ''}")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    """A personal API token (or a service account's): printed once, stored hashed."""
    from datetime import timedelta

    from sqlalchemy import select

    from server.auth.api_tokens import create_token, parse_scopes
    from server.kernel.db import utcnow
    from server.kernel.errors import AppError
    from server.org.models import Staff

    settings = _load_settings()

    async def run(session: Any) -> Any:
        staff_id = await session.scalar(select(Staff.id).where(Staff.username == args.user))
        if staff_id is None:
            raise AppError(f"no staff member {args.user!r}")
        now = utcnow()
        return await create_token(
            session,
            staff_id=staff_id,
            name=args.name,
            scopes=parse_scopes(args.scopes.split(",")),
            expires_at=now + timedelta(days=args.days),
            now=now,
            created_by="cli",
        )

    try:
        token, view = asyncio.run(_with_session(settings, run))
    except AppError as e:
        print(f"onedoor: {e.code}: {e}", file=sys.stderr)
        return 1
    print(f"token {view.id} for {args.user}, expires {view.expires_at.isoformat()}")
    print(f"scopes: {', '.join(view.scopes)}")
    print(f"shown once, keep it safe: {token}")
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from server.auth.api_tokens import list_tokens
    from server.kernel.db import utcnow
    from server.org.models import Staff

    settings = _load_settings()

    async def run(session: Any) -> Any:
        staff_id = None
        if args.user:
            staff_id = await session.scalar(select(Staff.id).where(Staff.username == args.user))
            if staff_id is None:
                return []
        return await list_tokens(session, staff_id=staff_id)

    now = utcnow()
    for t in asyncio.run(_with_session(settings, run)):
        state = "revoked" if t.revoked_at else ("active" if t.active(now) else "expired")
        print(
            f"{t.id}\t{t.prefix}…\tstaff:{t.staff_id}\t{t.name}\t{state}\t"
            f"expires {t.expires_at.isoformat()}\t{','.join(t.scopes)}"
        )
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from server.auth.api_tokens import revoke_token
    from server.kernel.db import utcnow
    from server.kernel.errors import AppError

    settings = _load_settings()

    async def run(session: Any) -> Any:
        return await revoke_token(session, token_id=args.id, now=utcnow(), actor="cli")

    try:
        asyncio.run(_with_session(settings, run))
    except AppError as e:
        print(f"onedoor: {e.code}: {e}", file=sys.stderr)
        return 1
    print(f"token {args.id} revoked")
    return 0


def cmd_user_unlock(args: argparse.Namespace) -> int:
    """Clear a name's sign-in throttle. It lives in Redis when the nodes share one; a single
    node without Redis keeps it in its own memory, out of this process's reach: there a
    sec_admin uses POST /api/auth/unlock (or waits out the delay, at most login_lockout_s)."""
    from redis.asyncio import Redis

    from server.app import signin_policy
    from server.audit.service import record
    from server.kernel.throttle import RedisSignInThrottle

    settings = _load_settings()
    if not settings.redis_url:
        print(
            "onedoor: no Redis configured: the sign-in throttle lives in the server's memory; "
            "a sec_admin clears it with POST /api/auth/unlock",
            file=sys.stderr,
        )
        return 2
    redis_url = settings.redis_url

    async def run() -> int:
        client = Redis.from_url(redis_url)
        try:
            throttle = RedisSignInThrottle(client, policy=signin_policy(settings))
            cleared = await throttle.unlock(args.username)
        finally:
            await client.aclose()

        async def audit(session: Any) -> None:
            await record(
                session,
                actor="cli",
                action="auth.unlocked",
                detail={"username": args.username, "cleared_pairs": cleared},
            )

        await _with_session(settings, audit)
        return cleared

    cleared = asyncio.run(run())
    print(f"sign-in throttle cleared for {args.username} ({cleared} address(es))")
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from server.audit.service import verify

    settings = _load_settings()
    result = asyncio.run(_with_session(settings, verify))
    if result.ok:
        witnessed = ", ".join(result.witnesses) or "none"
        print(
            f"audit chain intact: {result.checked} entries verified "
            f"(MACs, links, heads witnessed by: {witnessed}; "
            f"{result.unwitnessed} entries after the newest witnessed head)"
        )
        return 0
    print(
        f"audit chain BROKEN at entry {result.first_bad_id}: {result.reason} "
        f"({result.checked} entries before it verified)"
    )
    return 1


def cmd_check(args: argparse.Namespace) -> int:
    settings = _load_settings()
    for name, value in settings.public_view().items():
        print(f"{name} = {value}")

    async def probe() -> dict[str, str]:
        from sqlalchemy import text

        from server.kernel.db import make_engine

        out: dict[str, str] = {}
        engine = make_engine(settings.effective_database_url)
        try:
            async with asyncio.timeout(5), engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            out["database"] = "reachable"
        except Exception as e:
            out["database"] = f"UNREACHABLE ({type(e).__name__})"
        finally:
            await engine.dispose()
        if settings.redis_url:
            from redis.asyncio import Redis

            client = Redis.from_url(settings.redis_url, socket_connect_timeout=3)
            try:
                await client.ping()
                out["redis"] = "reachable"
            except Exception as e:
                out["redis"] = f"UNREACHABLE ({type(e).__name__})"
            finally:
                await client.aclose()
        else:
            out["redis"] = "not configured (single node, in-process bus)"
        return out

    results = asyncio.run(probe())
    for name, status in results.items():
        print(f"{name}: {status}")
    return 0 if all("UNREACHABLE" not in v for v in results.values()) else 1


def cmd_backup(args: argparse.Namespace) -> int:
    from server.backup import backup
    from server.kernel.db import make_engine

    settings = _load_settings()

    async def run() -> Any:
        engine = make_engine(settings.effective_database_url)
        try:
            return await backup(
                engine, recordings_dir=settings.effective_recordings_dir, target=Path(args.file)
            )
        finally:
            await engine.dispose()

    summary = asyncio.run(run())
    print(
        f"backup written to {summary.path}: {sum(summary.tables.values())} rows in "
        f"{len(summary.tables)} tables, {summary.recordings} recording files"
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from server.backup import BackupError, restore
    from server.kernel.db import make_engine

    settings = _load_settings()
    alembic_upgrade(settings.effective_database_url)

    async def run() -> Any:
        engine = make_engine(settings.effective_database_url)
        try:
            return await restore(
                engine, recordings_dir=settings.effective_recordings_dir, source=Path(args.file)
            )
        finally:
            await engine.dispose()

    try:
        summary = asyncio.run(run())
    except BackupError as e:
        print(f"onedoor: restore refused: {e}", file=sys.stderr)
        return 1
    print(
        f"restored {sum(summary.tables.values())} rows and {summary.recordings} recording "
        f"files from {summary.path}"
    )
    return 0


def cmd_pii_rotate(args: argparse.Namespace) -> int:
    from server.kernel.crypto import PiiCipher
    from server.pii_rotation import rotate

    settings = _load_settings()
    pii = PiiCipher(settings.secret_bytes(), old_secrets=settings.previous_secret_bytes())
    count = asyncio.run(_with_session(settings, lambda s: rotate(s, pii=pii)))
    print(f"re-encrypted {count} rows under the current key {pii.key_id}")
    return 0


def cmd_dispatch_train(args: argparse.Namespace) -> int:
    from server.dispatch.service import train
    from server.kernel.db import make_engine, make_sessionmaker

    settings = _load_settings()

    async def run() -> Any:
        engine = make_engine(settings.effective_database_url)
        try:
            return await train(make_sessionmaker(engine), settings.data_dir / "dispatch.pkl")
        finally:
            await engine.dispose()

    try:
        result = asyncio.run(run())
    except ValueError as e:  # not enough concluded cases to learn from
        print(f"onedoor: cannot train the dispatch model: {e}", file=sys.stderr)
        return 1
    print(
        f"dispatch model {result.model_version} trained on {result.cases} concluded cases "
        f"({result.departments} departments), saved to {result.path}"
    )
    return 0


def _evidence_keys(settings: Settings | None) -> Any:
    from server.sessions.evidence.keys import EvidenceKeys

    if settings is None or settings.secret_key is None:
        return None
    return EvidenceKeys(settings.secret_bytes(), previous=settings.previous_secret_bytes())


def _settings_if_any() -> Settings | None:
    """The deployment's settings with its secret, if this machine has one (never makes one:
    `evidence verify` also runs on a third party's machine)."""
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as e:
        print(f"onedoor: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.secret_key is None and (settings.data_dir / "secret_key").is_file():
        settings = ensure_secret_key(settings)
    return settings if settings.secret_key is not None else None


def cmd_evidence_pubkey(args: argparse.Namespace) -> int:
    """The deployment's evidence public keys (PEM): the current one, then previous ones."""
    from server.sessions.evidence.keys import public_pem

    keys = _evidence_keys(ensure_secret_key(_load_settings()))
    for kid, public in sorted(keys.public_keys.items(), key=lambda kv: kv[0] != keys.key_id):
        label = "current" if kid == keys.key_id else "previous"
        if args.all or label == "current":
            if args.all:
                print(f"# key id {kid} ({label})")
            print(public_pem(public).decode(), end="")
    return 0


def cmd_evidence_verify(args: argparse.Namespace) -> int:
    from server.sessions.evidence.keys import key_id, load_public_pem
    from server.sessions.evidence.package import verify_package

    trusted: dict[str, Any] | None = None
    trusted_by = "given"
    if args.pubkey:
        trusted = {}
        for pem in args.pubkey:
            public = load_public_pem(Path(pem).read_bytes())
            trusted[key_id(public)] = public
    else:
        settings = _settings_if_any()
        keys = _evidence_keys(settings)
        if keys is not None:
            trusted, trusted_by = dict(keys.public_keys), "deployment"
    tsa_pem = Path(args.tsa_cert).read_bytes() if args.tsa_cert else None
    result = verify_package(
        Path(args.package),
        trusted_keys=trusted,
        trusted_by=trusted_by,
        tsa_certs_pem=tsa_pem,
        allow_missing=args.allow_missing,
    )
    if not result.ok:
        print(f"evidence package DOES NOT VERIFY: {result.first}")
        print(f"({len(result.checked)} items verified before it)")
        return 1
    how = {
        "given": "a key given with --pubkey",
        "deployment": "this deployment's key (current or previous)",
        "package": "the package's own pubkey.pem: compare it with the published key",
    }[result.trusted_by]
    print(f"signature OK: key {result.key_id}, trusted as {how}")
    if result.timestamp is not None:
        print(
            f"timestamp OK: {result.timestamp.gen_time.isoformat()} "
            f"(serial {result.timestamp.serial_number})"
        )
    else:
        print("no timestamp in the package")
    files = [c for c in result.checked if c not in ("manifest.sig", "manifest.tsr")]
    print(f"{len(files)} files OK (size, SHA-256, SM3)")
    for name, at in result.deleted.items():
        print(f"deleted by retention at {at} (signed deletion record): {name}")
    for name in result.missing:
        print(f"absent, not in any deletion record (--allow-missing): {name}")
    return 0


BENCHES = (
    "sfu",
    "sfu-peer",
    "recording",
    "join",
    "signaling",
    "cases",
    "scheduling",
    "soak",
    "fuzz",
    "fuzz-signaling",
    "hostile",
    "composite",
    "network",
)


def cmd_bench(args: argparse.Namespace) -> int:
    import importlib

    module_name = "bench." + {"fuzz": "fuzz_api"}.get(args.name, args.name.replace("-", "_"))
    sys.path.insert(0, str(MIGRATIONS_DIR.parent))
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        print(f"onedoor: benchmark {args.name!r} is not available ({e})", file=sys.stderr)
        return 2
    common = importlib.import_module("bench.common")
    # Bounded: ends within the benchmark's timeout (or --timeout) and always prints its JSON,
    # with an `error` and the checks it could not measure marked failed.
    result = common.run_benchmark(
        args.name,
        module,
        args.scale,
        lambda r: common.print_json(r, indent=None if args.json else 2),
        limit_s=args.timeout,
    )
    return 0 if common.passed(result) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onedoor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="run the web, signaling and media server")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(func=cmd_serve)
    db = sub.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply the migrations").set_defaults(func=cmd_db_upgrade)
    demo = sub.add_parser("demo", help="demo data").add_subparsers(
        dest="demo_command", required=True
    )
    p = demo.add_parser("load", help="load the demo district (once)")
    p.add_argument("--password", help="password for every demo account (default: random)")
    p.set_defaults(func=cmd_demo_load)
    user = sub.add_parser("user", help="staff accounts").add_subparsers(
        dest="user_command", required=True
    )
    p = user.add_parser("add", help="add a staff account")
    p.add_argument("username")
    p.add_argument("--name", help="display name")
    p.add_argument("--site", required=True, help="site administrative code")
    p.add_argument("--department", help="department code")
    p.add_argument("--roles", required=True, help="comma-separated role codes")
    p.add_argument("--password", help="(default: asked for at a prompt)")
    p.set_defaults(func=cmd_user_add)
    p = user.add_parser("unlock", help="clear a name's sign-in throttle (Redis deployments)")
    p.add_argument("username")
    p.set_defaults(func=cmd_user_unlock)
    holidays = sub.add_parser("holidays", help="the holiday calendar").add_subparsers(
        dest="holidays_command", required=True
    )
    p = holidays.add_parser("load", help="replace a year with a JSON file's days")
    p.add_argument("file")
    p.set_defaults(func=cmd_holidays_load)
    token = sub.add_parser("token", help="API tokens for integrators").add_subparsers(
        dest="token_command", required=True
    )
    p = token.add_parser("create", help="create an API token (shown once)")
    p.add_argument("--user", required=True, help="the owner's username (a person or service)")
    p.add_argument("--name", required=True, help="what the token is for")
    p.add_argument("--scopes", required=True, help="comma-separated actions, e.g. case.view")
    p.add_argument("--days", type=int, default=90, help="lifetime in days (at most 366)")
    p.set_defaults(func=cmd_token_create)
    p = token.add_parser("list", help="list API tokens")
    p.add_argument("--user", help="only this username's tokens")
    p.set_defaults(func=cmd_token_list)
    p = token.add_parser("revoke", help="revoke an API token")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_token_revoke)
    audit = sub.add_parser("audit", help="audit log").add_subparsers(
        dest="audit_command", required=True
    )
    audit.add_parser("verify", help="verify the hash chain").set_defaults(func=cmd_audit_verify)
    p = sub.add_parser("backup", help="write a backup (database and recordings)")
    p.add_argument("file")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser("restore", help="restore a backup into an empty deployment")
    p.add_argument("file")
    p.set_defaults(func=cmd_restore)
    pii = sub.add_parser("pii", help="personal data").add_subparsers(
        dest="pii_command", required=True
    )
    pii.add_parser("rotate", help="re-encrypt under the current secret").set_defaults(
        func=cmd_pii_rotate
    )
    dispatch = sub.add_parser("dispatch", help="smart dispatch (智能分派)").add_subparsers(
        dest="dispatch_command", required=True
    )
    dispatch.add_parser("train", help="retrain on concluded cases").set_defaults(
        func=cmd_dispatch_train
    )
    evidence = sub.add_parser("evidence", help="evidence packages (证据包)").add_subparsers(
        dest="evidence_command", required=True
    )
    p = evidence.add_parser("pubkey", help="print the evidence signing public key (PEM)")
    p.add_argument("--all", action="store_true", help="previous keys too, each with its key id")
    p.set_defaults(func=cmd_evidence_pubkey)
    p = evidence.add_parser("verify", help="verify an evidence package ZIP")
    p.add_argument("package")
    p.add_argument("--pubkey", action="append", help="trusted public key PEM (repeatable)")
    p.add_argument("--tsa-cert", help="TSA certificate PEM (default: the package's tsa.pem)")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="listed files may be absent even without a signed deletion record",
    )
    p.set_defaults(func=cmd_evidence_verify)
    sub.add_parser("check", help="show settings and reachability").set_defaults(func=cmd_check)
    p = sub.add_parser("bench", help="run a benchmark")
    p.add_argument("name", choices=BENCHES)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument(
        "--timeout", type=float, help="overall bound in seconds (default: the benchmark's own)"
    )
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
