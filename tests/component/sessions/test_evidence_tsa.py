"""RFC 3161: a real timestamp from `openssl ts -reply` acting as the TSA on loopback, verified
on receipt and again later; a token over another digest, or checked against another TSA's
certificate, does not verify."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from rfc3161_client import VerificationError

from server.kernel.tsa import (
    TimestampFailed,
    TsaConfig,
    request_timestamp,
    verify_token,
)
from tests.tsa_loopback import loopback_tsa, make_tsa_cert

MANIFEST = b'{"files":[],"format":"onedoor-evidence-manifest/1"}'


async def test_timestamp_from_a_real_tsa_verifies_and_binds_the_manifest(tmp_path: Path) -> None:
    async with loopback_tsa(tmp_path / "tsa") as tsa:
        token = await request_timestamp(TsaConfig(tsa.url, tsa.cert_pem), MANIFEST)
    info = verify_token(token, MANIFEST, tsa.cert_pem)
    assert info.serial_number > 0

    with pytest.raises(VerificationError, match="Mismatch between messages"):
        verify_token(token, MANIFEST + b" ", tsa.cert_pem)
    other_cert, _ = make_tsa_cert(tmp_path / "other", name="another TSA")
    with pytest.raises(VerificationError):
        verify_token(token, MANIFEST, other_cert.read_bytes())

    _openssl_verifies(tmp_path, token, tsa.cert_path)  # a third party with openssl alone


def _openssl_verifies(tmp_path: Path, token: bytes, cert: Path) -> None:
    (tmp_path / "m.json").write_bytes(MANIFEST)
    (tmp_path / "m.tsr").write_bytes(token)
    ok = subprocess.run(
        ["openssl", "ts", "-verify", "-in", str(tmp_path / "m.tsr"), "-data",
         str(tmp_path / "m.json"), "-CAfile", str(cert)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0 and "Verification: OK" in ok.stdout, ok.stdout + ok.stderr


async def test_a_reply_that_does_not_verify_is_refused_on_receipt(tmp_path: Path) -> None:
    other_cert, _ = make_tsa_cert(tmp_path / "other", name="another TSA")
    async with loopback_tsa(tmp_path / "tsa") as tsa:
        with pytest.raises(TimestampFailed, match="does not verify"):
            await request_timestamp(TsaConfig(tsa.url, other_cert.read_bytes()), MANIFEST)
        with pytest.raises(TimestampFailed, match="HTTP 404"):
            await request_timestamp(TsaConfig(tsa.url + "/nope", tsa.cert_pem), MANIFEST)
