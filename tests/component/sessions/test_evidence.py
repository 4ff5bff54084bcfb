"""The evidence package (#20 items 3-5) on a session with real WebM recordings and a chat:
download with a reason (audited; refused to roles that may not play recordings), verified by
`onedoor evidence verify` and by openssl/sha256sum alone, a timestamp from a real TSA on
loopback; one byte changed in each kind of file and in the manifest, each named; retention
deletes the originals after the period (injected clock) and keeps the manifest."""

from __future__ import annotations

import hashlib
import subprocess
import uuid
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from server.audit.models import AuditEntry
from server.cli import main as cli
from server.http import keys
from server.kernel.jobs import JobRunner, Periodic
from server.sessions.evidence import manifest as mf
from server.sessions.evidence.keys import EvidenceKeys, public_pem
from server.sessions.evidence.package import verify_package
from server.sessions.evidence.retention import days_from, run_retention
from server.sessions.evidence.service import CHAT_NAME, EvidenceContext
from server.sessions.models import (
    CallSession,
    ChatMessage,
    EvidenceManifest,
    ParticipantRole,
    Recording,
    SessionComposite,
    SessionKind,
    SessionMode,
    SessionParticipant,
    SessionState,
)
from tests.conftest import make_settings, signed_in
from tests.fakes import FakeClock
from tests.tsa_loopback import Tsa, loopback_tsa

Client = TestClient[Any, Any]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _webm(path: Path, shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(
                np.full((48, 64, 3), (shade + i * 20) % 255, dtype=np.uint8), format="rgb24"
            )
            frame.pts, frame.time_base = i, Fraction(1, 10)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture
async def tsa(tmp_path: Path) -> AsyncIterator[Tsa]:
    async with loopback_tsa(tmp_path / "tsa") as running:
        yield running


@pytest.fixture
async def client(tmp_path: Path, demo_db_url: str, tsa: Tsa) -> AsyncIterator[Client]:
    from server.app import create_app

    settings = make_settings(
        tmp_path,
        demo_db_url,
        tsa_url=tsa.url,
        tsa_cert=tsa.cert_path,
        retention_days_mediation=30,
    )
    async with TestClient(TestServer(create_app(settings))) as c:
        yield c


async def _ended_session(client: Client) -> int:
    """A mediation that ended at T0 + 20 min, with a party's and the mediator's recording
    (real WebM files written the way the recorder names them) and two chat lines."""
    root: Path = client.app[keys.settings].effective_recordings_dir
    room = f"r-{uuid.uuid4().hex[:12]}"
    async with client.app[keys.db].begin() as session:
        call = CallSession(
            room_id=room,
            kind=SessionKind.mediation,
            mode=SessionMode.video,
            state=SessionState.ended,
            title="邻里噪声调解",
            recording_allowed=True,
            actual_start=T0,
            actual_end=T0 + timedelta(minutes=20),
            created_at=T0,
        )
        session.add(call)
        await session.flush()
        for identity, name, role in (
            ("guest:abc", "张三", ParticipantRole.party),
            ("staff:9", "调解员李", ParticipantRole.mediator),
        ):
            session.add(
                SessionParticipant(
                    session_id=call.id,
                    identity=identity,
                    role=role,
                    display_name=name,
                    joined_at=T0,
                    left_at=T0 + timedelta(minutes=20),
                    recording_consent_at=T0 + timedelta(seconds=30),
                )
            )
            path = root / room / f"{room}-{identity.replace(':', '_')}-video-0a1b2c3d.webm"
            _webm(path, shade=len(name) * 40)
            data = path.read_bytes()
            session.add(
                Recording(
                    session_id=call.id,
                    identity=identity,
                    kind="video",
                    storage_uri=str(path),
                    sha256=hashlib.sha256(data).hexdigest(),
                    size_bytes=len(data),
                    started_at=T0 + timedelta(minutes=1),
                    duration_s=0.6,
                )
            )
        for i, text in enumerate(("您好，请说明情况。", "楼上每晚十一点后还很吵。")):
            session.add(
                ChatMessage(
                    session_id=call.id,
                    sender="staff:9" if i == 0 else "guest:abc",
                    display_name="调解员李" if i == 0 else "张三",
                    text=text,
                    at=T0 + timedelta(minutes=2 + i),
                )
            )
        return call.id


async def _audit(client: Client, action: str) -> list[AuditEntry]:
    async with client.app[keys.db].begin() as session:
        return list(
            (await session.scalars(select(AuditEntry).where(AuditEntry.action == action))).all()
        )


async def _download(client: Client, token: str, sid: int, path: Path) -> Path:
    resp = await client.post(
        f"/sessions/{sid}/evidence", data={"_csrf": token, "reason": "移送法院司法确认"}
    )
    body = await resp.read()
    assert resp.status == 200, body[:500]
    assert resp.headers["Content-Type"] == "application/zip"
    return _write(path, body)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _exists(path: Path) -> bool:
    return path.exists()


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _tampered(src: Path, member: str, dst: Path) -> Path:
    """A copy of the package with one byte of `member` changed."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename == member:
                middle = len(data) // 2
                data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]
            zout.writestr(info, data)
    return dst


def _ctx(client: Client) -> EvidenceContext:
    return EvidenceContext.from_settings(client.app[keys.settings])


async def test_package_downloads_audited_and_verifies_by_cli_and_openssl(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = await _ended_session(client)
    token = await signed_in(client, "centre_supervisor")
    page = await (await client.get(f"/sessions/{sid}/record")).text()
    assert "下载证据包" in page and f'action="/sessions/{sid}/evidence"' in page

    pkg = await _download(client, token, sid, tmp_path / "pkg.zip")
    [entry] = await _audit(client, "session.evidence_download")
    assert entry.actor.startswith("staff:") and entry.detail["reason"] == "移送法院司法确认"
    assert entry.object_id == str(sid)

    with zipfile.ZipFile(pkg) as zf:
        names = set(zf.namelist())
        manifest = mf.parse(zf.read("manifest.json"))
        chat = zf.read(CHAT_NAME).decode()
        assert "如何" in zf.read("README.txt").decode() or "校验" in zf.read("README.txt").decode()
    assert {"manifest.json", "manifest.sig", "manifest.tsr", "tsa.pem", "pubkey.pem"} <= names
    assert "楼上每晚十一点后还很吵。" in chat
    kinds = [f["kind"] for f in manifest["files"]]
    assert kinds == ["original", "original", "chat"]
    assert manifest["file_kinds"] == ["original", "composite", "transcript_pdf", "chat"]
    s = manifest["session"]
    assert s["kind"] == "mediation" and s["times"]["actual_end"] == {
        "utc": "2026-03-02T09:20:00Z",
        "local": "2026-03-02T17:20:00+08:00",
    }
    assert {(p["display_name"], p["role"], p["consent"]) for p in s["participants"]} == {
        ("张三", "party", "given"),
        ("调解员李", "mediator", "given"),
    }
    for f in manifest["files"]:
        assert len(f["sha256"]) == 64 and len(f["sm3"]) == 64 and f["size"] > 0

    # `onedoor evidence verify` with the published key (as a third party would)
    pem = tmp_path / "published.pem"
    pem.write_bytes(public_pem(_ctx(client).keys.public_key))
    assert cli(["evidence", "verify", str(pkg), "--pubkey", str(pem)]) == 0
    out = capsys.readouterr().out
    assert "signature OK" in out and "timestamp OK" in out and "3 files OK" in out

    # openssl and sha256sum alone, as README.txt says
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(pkg).extractall(unpacked)

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, cwd=unpacked, capture_output=True, text=True, check=False)

    sig = run("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "pubkey.pem", "-rawin",
              "-in", "manifest.json", "-sigfile", "manifest.sig")  # fmt: skip
    assert sig.returncode == 0 and "Signature Verified Successfully" in sig.stdout, sig.stderr
    sums = run("sha256sum", "-c", "SHA256SUMS")
    assert sums.returncode == 0 and sums.stdout.count(": OK") == 3, sums.stdout + sums.stderr
    ts = run("openssl", "ts", "-verify", "-in", "manifest.tsr", "-data", "manifest.json",
             "-CAfile", "tsa.pem")  # fmt: skip
    assert ts.returncode == 0 and "Verification: OK" in ts.stdout, ts.stdout + ts.stderr

    # the second download carries the same stored manifest (signed once)
    again = await _download(client, token, sid, tmp_path / "again.zip")
    with zipfile.ZipFile(again) as zf:
        assert zf.read("manifest.json") == zipfile.ZipFile(pkg).read("manifest.json")
    async with client.app[keys.db].begin() as session:
        rows = (await session.scalars(select(EvidenceManifest))).all()
    assert len(rows) == 1 and rows[0].timestamp_token


async def test_one_changed_byte_in_each_kind_of_file_is_named(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = await _ended_session(client)
    token = await signed_in(client, "centre_supervisor")
    pkg = await _download(client, token, sid, tmp_path / "pkg.zip")
    trusted = dict(_ctx(client).keys.public_keys)
    assert verify_package(pkg, trusted_keys=trusted).ok
    with zipfile.ZipFile(pkg) as zf:
        original = next(n for n in zf.namelist() if n.startswith("originals/"))
    expected = {
        original: (original, "SHA-256"),
        CHAT_NAME: (CHAT_NAME, "SHA-256"),
        "manifest.json": ("manifest.json", "signature does not match"),
        "manifest.sig": ("manifest.json", "signature does not match"),
        "manifest.tsr": ("manifest.tsr", "timestamp does not verify"),
    }
    for i, (member, (what, why)) in enumerate(expected.items()):
        bad = _tampered(pkg, member, tmp_path / f"bad{i}.zip")
        result = verify_package(bad, trusted_keys=trusted)
        assert result.first is not None and result.first.what == what, (member, result.first)
        assert why in result.first.reason, (member, result.first)
        capsys.readouterr()
        assert cli(["evidence", "verify", str(bad), "--pubkey", str(_pem(client, tmp_path))]) == 1
        assert what in capsys.readouterr().out

    # a package signed by someone else's key
    stranger = dict(EvidenceKeys(b"another deployment").public_keys)
    result = verify_package(pkg, trusted_keys=stranger)
    assert result.first is not None and "not a trusted key" in result.first.reason


def _pem(client: Client, tmp_path: Path) -> Path:
    path = tmp_path / "deployment.pem"
    path.write_bytes(public_pem(_ctx(client).keys.public_key))
    return path


async def test_a_package_signed_before_a_secret_rotation_still_verifies(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = await _ended_session(client)
    token = await signed_in(client, "centre_supervisor")
    pkg = await _download(client, token, sid, tmp_path / "pkg.zip")
    old = client.app[keys.settings].secret_key.get_secret_value()

    monkeypatch.setenv("ONEDOOR_DATA_DIR", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("ONEDOOR_SECRET_KEY", "the-new-secret-after-rotation-0123456789")
    monkeypatch.setenv("ONEDOOR_PREVIOUS_SECRET_KEYS", old)
    assert cli(["evidence", "verify", str(pkg)]) == 0
    monkeypatch.delenv("ONEDOOR_PREVIOUS_SECRET_KEYS")
    assert cli(["evidence", "verify", str(pkg)]) == 1  # the old key is no longer trusted


async def test_only_who_may_play_recordings_may_download_and_a_reason_is_required(
    client: Client, tmp_path: Path
) -> None:
    sid = await _ended_session(client)
    token = await signed_in(client, "window_officer")
    resp = await client.post(f"/sessions/{sid}/evidence", data={"_csrf": token, "reason": "看看"})
    assert resp.status == 403
    assert (await client.post("/sessions/999999/evidence", data={"_csrf": token})).status == 404

    token = await signed_in(client, "centre_supervisor")
    resp = await client.post(f"/sessions/{sid}/evidence", data={"_csrf": token, "reason": " "})
    assert resp.status == 422 and "请填写调阅原因" in await resp.text()
    assert not await _audit(client, "session.evidence_download")
    assert not await _audit(client, "session.evidence_manifest")


async def _add_composite(client: Client, sid: int) -> Path:
    """A finished composite row of the session, its file a stand-in MP4 (only its digest is
    checked by the manifest; test_composite_job makes real ones)."""
    root: Path = client.app[keys.settings].effective_recordings_dir
    path = root / "composite" / f"session-{sid}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8
    path.write_bytes(data)
    async with client.app[keys.db].begin() as session:
        session.add(
            SessionComposite(
                session_id=sid,
                created_at=T0 + timedelta(minutes=21),
                due_at=T0 + timedelta(minutes=21),
                status="sent",
                sent_at=T0 + timedelta(minutes=25),
                progress=100,
                storage_uri=str(path),
                sha256=hashlib.sha256(data).hexdigest(),
                size_bytes=len(data),
                duration_s=1200.0,
            )
        )
    return path


def _openssl_verify(where: Path, data: str, signature: str) -> subprocess.CompletedProcess[str]:
    cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "pubkey.pem", "-rawin",
           "-in", data, "-sigfile", signature]  # fmt: skip
    return subprocess.run(cmd, cwd=where, capture_output=True, text=True, check=False)


def _without(src: Path, members: set[str], dst: Path) -> Path:
    """A copy of the package without `members`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename not in members:
                zout.writestr(info, zin.read(info.filename))
    return dst


async def test_retention_deletes_originals_and_composite_and_packages_say_so_signed(
    client: Client, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = await _ended_session(client)
    composite = await _add_composite(client, sid)
    db = client.app[keys.db]
    async with db.begin() as session:
        paths = [Path(r.storage_uri) for r in await session.scalars(select(Recording))]
    assert len(paths) == 2 and all(p.exists() for p in paths)
    clock = FakeClock(T0 + timedelta(days=30))  # ended at T0 + 20 min: not yet
    settings = client.app[keys.settings]
    runner = JobRunner(db, clock=clock)
    runner.add_periodic(
        Periodic(
            "recording_retention",
            every=timedelta(hours=1),
            run=lambda now: run_retention(
                db,
                ctx=_ctx(client),
                days=days_from(
                    settings.retention_days_reception, settings.retention_days_mediation
                ),
                now=now,
            ),
        )
    )
    await runner.run_once()
    assert all(p.exists() for p in paths) and composite.exists()
    assert not await _audit(client, "recording.retention_delete")

    clock.current = T0 + timedelta(days=30, hours=2)
    await runner.run_once()
    assert not any(p.exists() for p in paths) and not composite.exists()
    deletions = await _audit(client, "recording.retention_delete")
    assert len(deletions) == 2 and all(d.actor == "system" for d in deletions)
    [gone] = await _audit(client, "composite.retention_delete")
    assert gone.actor == "system" and gone.object_id == str(sid)
    assert gone.detail["file"] == f"composite/session-{sid}.mp4"
    async with db.begin() as session:
        recs = list(await session.scalars(select(Recording).where(Recording.session_id == sid)))
        manifests = list(await session.scalars(select(EvidenceManifest)))
        comp = await session.scalar(select(SessionComposite))
    assert all(r.deleted_at == clock.current for r in recs)
    assert comp is not None and comp.deleted_at == clock.current
    # the manifest made before the deletion lists the composite too; it is kept
    assert len(manifests) == 1 and manifests[0].session_id == sid
    listed = [f["name"] for f in mf.parse(manifests[0].manifest)["files"]]
    assert f"composite/session-{sid}.mp4" in listed

    token = await signed_in(client, "centre_supervisor")
    page = await (await client.get(f"/sessions/{sid}/record")).text()
    assert "录像已按保存期限删除，保留清单" in page and f"/sessions/{sid}/recordings" not in page
    assert "合成录像已按保存期限删除，保留清单" in page

    pkg = await _download(client, token, sid, tmp_path / "after.zip")
    with zipfile.ZipFile(pkg) as zf:
        assert zf.read("manifest.json") == bytes(manifests[0].manifest)
        names = zf.namelist()
        record = zf.read("deletions.json").decode()
    assert not [n for n in names if n.startswith(("originals/", "composite/"))]
    assert "deletions.sig" in names and "deletions-pubkey.pem" not in names
    assert record.count('"reason":"retention"') == 3
    trusted = dict(_ctx(client).keys.public_keys)
    checked = verify_package(pkg, trusted_keys=trusted)
    assert checked.ok and not checked.missing and CHAT_NAME in checked.checked
    assert sorted(checked.deleted) == sorted(n for n in listed if n != CHAT_NAME)
    assert set(checked.deleted.values()) == {"2026-04-01T11:00:00Z"}
    assert cli(["evidence", "verify", str(pkg)]) == 0
    out = capsys.readouterr().out
    assert out.count("deleted by retention at 2026-04-01T11:00:00Z") == 3, out

    # openssl alone verifies the deletion record and its tie to the manifest, as README says
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(pkg).extractall(unpacked)
    sig = _openssl_verify(unpacked, "deletions.json", "deletions.sig")
    assert "Signature Verified Successfully" in sig.stdout, sig.stderr
    manifest_sha = hashlib.sha256((unpacked / "manifest.json").read_bytes()).hexdigest()
    assert f'"manifest_sha256":"{manifest_sha}"' in record

    # a changed deletion record, one without its signature, none at all: each caught
    edited = verify_package(
        _tampered(pkg, "deletions.json", tmp_path / "e.zip"), trusted_keys=trusted
    )
    assert edited.first is not None and edited.first.what == "deletions.json"
    unsigned = verify_package(
        _without(pkg, {"deletions.sig"}, tmp_path / "u.zip"), trusted_keys=trusted
    )
    assert unsigned.first is not None and unsigned.first.what == "deletions.json"
    bare = _without(pkg, {"deletions.json", "deletions.sig"}, tmp_path / "b.zip")
    missing = verify_package(bare, trusted_keys=trusted)
    assert missing.first is not None and missing.first.what.startswith("originals/")
    assert "missing" in missing.first.reason
    allowed = verify_package(bare, trusted_keys=trusted, allow_missing=True)
    assert allowed.ok and len(allowed.missing) == 3 and not allowed.deleted

    await runner.run_once()  # nothing left to delete, nothing audited twice
    assert len(await _audit(client, "recording.retention_delete")) == 2
    assert len(await _audit(client, "composite.retention_delete")) == 1


async def test_a_composite_outlives_no_original_but_one_on_legal_hold_keeps_it(
    client: Client,
) -> None:
    sid = await _ended_session(client)
    composite = await _add_composite(client, sid)
    db = client.app[keys.db]
    async with db.begin() as session:
        rec = (await session.scalars(select(Recording).order_by(Recording.id))).first()
        assert rec is not None
        rec.legal_hold = True
    report = await run_retention(
        db, ctx=_ctx(client), days=days_from(30, 30), now=T0 + timedelta(days=60)
    )
    assert len(report.deleted) == 1 and report.composites_deleted == []
    assert composite.exists() and not await _audit(client, "composite.retention_delete")


async def test_a_tampered_original_is_never_signed(client: Client, tmp_path: Path) -> None:
    sid = await _ended_session(client)
    async with client.app[keys.db].begin() as session:
        rec = (await session.scalars(select(Recording))).first()
        assert rec is not None
        path = Path(rec.storage_uri)
    _flip_a_byte(path)
    token = await signed_in(client, "centre_supervisor")
    resp = await client.post(
        f"/sessions/{sid}/evidence", data={"_csrf": token, "reason": "移送法院司法确认"}
    )
    assert resp.status == 409 and "录像文件校验失败" in await resp.text()
    [tampered] = await _audit(client, "recording.tampered")
    assert tampered.object_id == str(sid) and tampered.detail["during"] == "evidence_download"
    async with client.app[keys.db].begin() as session:
        assert not (await session.scalars(select(EvidenceManifest))).all()
    report = await run_retention(
        client.app[keys.db],
        ctx=_ctx(client),
        days=days_from(30, 30),
        now=T0 + timedelta(days=60),
    )
    assert report.deleted == [] and report.skipped_sessions == [sid]
    assert _exists(path)
