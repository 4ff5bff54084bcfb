"""A real three-party recording (aiortc peers through the SFU, one WebM per track) filed as a
session's recordings, then its evidence package built, verified, and one byte of a recorded
track changed and named."""

from __future__ import annotations

import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from media.interfaces import RecordingFile
from media.sfu import SfuMediaNode
from server.kernel.db import make_engine, make_sessionmaker
from server.sessions.evidence.keys import EvidenceKeys, public_pem
from server.sessions.evidence.package import verify_package, write_package
from server.sessions.evidence.service import (
    EvidenceContext,
    PackagePlan,
    ensure_manifest,
    original_name,
)
from server.sessions.models import (
    CallSession,
    ParticipantRole,
    Recording,
    SessionKind,
    SessionMode,
    SessionParticipant,
    SessionState,
)
from tests.media.rtc_clients import EventPump, TestClient, wait_until

pytestmark = pytest.mark.media


async def _record(node: SfuMediaNode, pump: EventPump, directory: Path) -> list[RecordingFile]:
    clients = [pump.add(TestClient(node, "ev", f"p{i}")) for i in range(3)]
    for client in clients:
        await client.join()
    for client in clients:
        await wait_until(lambda c=client: len(c.publishers("video", 3)) == 2, 15, "video")
    await node.start_recording(room_id="ev", directory=directory)
    forwarders = list(node._rooms["ev"].forwarders())
    start = {(f.publisher_id, f.kind): f.keyframes_in for f in forwarders}
    # until each publisher's video has had a keyframe since the start (the file begins there)
    await wait_until(
        lambda: all(
            f.keyframes_in > start[(f.publisher_id, f.kind)]
            for f in forwarders
            if f.kind == "video"
        ),
        20,
        "a keyframe from every publisher",
    )
    files = await node.stop_recording(room_id="ev")
    for client in clients:
        await client.close()
    return list(files)


def _write(plan: PackagePlan, path: Path) -> Path:
    with path.open("wb") as fh:
        write_package(fh, plan)
    return path


def _flip(src: Path, member: str, dst: Path) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == member:
                data = data[:-1] + bytes([data[-1] ^ 0x80])
            zout.writestr(info, data)
    return dst


async def test_a_real_recording_packaged_verifies_and_a_changed_track_is_named(
    node: SfuMediaNode, pump: EventPump, tmp_path: Path, sqlite_url: str
) -> None:
    recdir = tmp_path / "recordings"
    recdir.mkdir()
    files = await _record(node, pump, recdir)
    assert {(f.peer_id, f.kind) for f in files} == {
        (f"p{i}", kind) for i in range(3) for kind in ("video", "audio")
    }

    engine = make_engine(sqlite_url)
    db = make_sessionmaker(engine)
    now = datetime.now(UTC)
    try:
        async with db.begin() as session:
            call = CallSession(
                room_id=f"ev-{uuid.uuid4().hex[:8]}",
                kind=SessionKind.mediation,
                mode=SessionMode.video,
                state=SessionState.ended,
                title="三方调解",
                recording_allowed=True,
                actual_start=now - timedelta(minutes=1),
                actual_end=now,
                created_at=now,
            )
            session.add(call)
            await session.flush()
            for i in range(3):
                session.add(
                    SessionParticipant(
                        session_id=call.id,
                        identity=f"guest:p{i}",
                        role=ParticipantRole.mediator if i == 0 else ParticipantRole.party,
                        display_name=f"参会人{i}",
                        recording_consent_at=now - timedelta(minutes=1),
                    )
                )
            for f in files:
                session.add(
                    Recording(
                        session_id=call.id,
                        identity=f"guest:{f.peer_id}",
                        kind=f.kind,
                        storage_uri=str(f.path),
                        sha256=f.sha256,
                        size_bytes=f.size_bytes,
                        started_at=datetime.fromtimestamp(f.started_at_unix, UTC),
                        duration_s=f.duration_s,
                    )
                )
            session_id = call.id
        keys = EvidenceKeys(b"media-evidence-test-secret")
        ctx = EvidenceContext(keys=keys, recordings_dir=recdir, tz="Asia/Shanghai")
        stored = await ensure_manifest(db, session_id=session_id, ctx=ctx, now=now)
        async with db.begin() as session:
            recs = list((await session.execute(Recording.__table__.select())).mappings())
    finally:
        await engine.dispose()

    originals = [f for f in stored.files if f["kind"] == "original"]
    assert len(originals) == 6
    assert {e["sha256"] for e in originals} == {f.sha256 for f in files}
    plan = PackagePlan(
        stored=stored, public_key_pem=public_pem(keys.public_key), tsa_certs_pem=None
    )
    by_id = {r["id"]: r for r in recs}
    for entry in originals:
        row = by_id[entry["about"]["recording_id"]]
        rec = Recording(id=row["id"], storage_uri=row["storage_uri"], kind=row["kind"])
        assert entry["name"] == original_name(rec)
        plan.paths[entry["name"]] = Path(row["storage_uri"])
    plan.inline.update({k: v.encode() for k, v in stored.inline_files.items()})
    pkg = _write(plan, tmp_path / "pkg.zip")

    result = verify_package(pkg, trusted_keys=dict(keys.public_keys))
    assert result.ok, result.first
    assert len(result.checked) == 1 + 6 + 1  # signature, six tracks, chat
    audio = next(e["name"] for e in originals if e["about"]["track"] == "audio")
    bad = verify_package(
        _flip(pkg, audio, tmp_path / "bad.zip"), trusted_keys=dict(keys.public_keys)
    )
    assert bad.first is not None and bad.first.what == audio and "SHA-256" in bad.first.reason
