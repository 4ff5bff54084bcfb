"""The manifest's canonical form and digests, and the evidence keys with rotation."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from server.cli import main as cli
from server.sessions.evidence import manifest as mf
from server.sessions.evidence.keys import EvidenceKeys, key_id, load_public_pem, public_pem


def test_canonical_json_is_sorted_compact_utf8() -> None:
    data = mf.canonical({"b": 1, "a": {"名": "张三", "z": [1, 2]}, "format": mf.FORMAT})
    assert data == (
        '{"a":{"z":[1,2],"名":"张三"},"b":1,"format":"onedoor-evidence-manifest/1"}'.encode()
    )
    with pytest.raises(ValueError, match="manifest"):
        mf.parse(b'{"format":"something else","files":[]}')
    with pytest.raises(ValueError, match="UTF-8 JSON"):
        mf.parse(b"\xff")


def test_digests_sha256_and_sm3() -> None:
    d = mf.digest_bytes(b"abc")
    assert d.size == 3
    assert d.sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    # GB/T 32905-2016 example 1
    assert d.sm3 == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    entry = mf.file_entry("chat/chat.json", mf.FileKind.chat, d)
    assert mf.check_file(entry, d) is None
    assert "SM3" in str(mf.check_file(entry, mf.Digests(3, d.sha256, "0" * 64)))
    assert "missing" in str(mf.check_file(entry, None))


def test_unsafe_member_names() -> None:
    assert mf.safe_name("originals/1-a.webm")
    for bad in ("", "/etc/passwd", "../x", "a/../b", "a\\b", "a//b"):
        assert not mf.safe_name(bad), bad


def test_previous_secret_still_verifies_and_only_the_current_one_signs() -> None:
    old, new = EvidenceKeys(b"old secret"), EvidenceKeys(b"new secret", previous=(b"old secret",))
    assert EvidenceKeys(b"old secret").key_id == old.key_id  # derived, not random
    assert new.key_id != old.key_id and set(new.public_keys) == {new.key_id, old.key_id}
    data = b'{"format":"x"}'
    signature = old.sign(data)
    assert len(signature) == 64
    assert new.verify(data, signature, signed_by=old.key_id)
    assert not new.verify(data + b" ", signature, signed_by=old.key_id)
    assert not EvidenceKeys(b"new secret").verify(data, signature, signed_by=old.key_id)
    assert key_id(load_public_pem(public_pem(new.public_key))) == new.key_id


def test_pubkey_command_prints_the_pem_openssl_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ONEDOOR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ONEDOOR_SECRET_KEY", "current-secret-0123456789abcdef")
    monkeypatch.setenv("ONEDOOR_PREVIOUS_SECRET_KEYS", "older-secret-0123456789abcdef")
    assert cli(["evidence", "pubkey"]) == 0
    pem = capsys.readouterr().out
    keys = EvidenceKeys(b"current-secret-0123456789abcdef")
    assert pem.encode() == public_pem(keys.public_key)
    (tmp_path / "pub.pem").write_text(pem)
    shown = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(tmp_path / "pub.pem"), "-noout", "-text"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert shown.returncode == 0 and "ED25519" in shown.stdout.upper()
    assert cli(["evidence", "pubkey", "--all"]) == 0
    listed = capsys.readouterr().out
    assert listed.count("BEGIN PUBLIC KEY") == 2 and f"# key id {keys.key_id} (current)" in listed
