"""A real RFC 3161 time-stamping authority on loopback for tests: `openssl ts -reply` behind
a tiny aiohttp handler, with a self-signed TSA certificate (extendedKeyUsage timeStamping,
critical) made with `cryptography`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_CONFIG = """\
[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
serial = {serial}
crypto_device = builtin
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
accuracy = secs:1
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


@dataclass(frozen=True, slots=True)
class Tsa:
    url: str
    cert_pem: bytes
    cert_path: Path


def make_tsa_cert(directory: Path, name: str = "onedoor test TSA") -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "tsa.pem", directory / "tsa.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@asynccontextmanager
async def loopback_tsa(directory: Path) -> AsyncIterator[Tsa]:
    """Serve `openssl ts -reply` on 127.0.0.1 for as long as the context lasts."""
    cert_path, key_path = make_tsa_cert(directory)
    (directory / "serial").write_text("01\n")
    config = directory / "tsa.cnf"
    config.write_text(_CONFIG.format(serial=directory / "serial"))
    counter = 0

    async def reply(request: web.Request) -> web.Response:
        nonlocal counter
        counter += 1
        query, out = directory / f"q{counter}.tsq", directory / f"r{counter}.tsr"
        query.write_bytes(await request.read())
        proc = await asyncio.create_subprocess_exec(
            "openssl", "ts", "-reply", "-config", str(config), "-queryfile", str(query),
            "-signer", str(cert_path), "-inkey", str(key_path), "-out", str(out),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        if proc.returncode != 0:
            return web.Response(status=500, text=err.decode())
        return web.Response(body=out.read_bytes(), content_type="application/timestamp-reply")

    app = web.Application()
    app.router.add_post("/tsa", reply)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Tsa(
            url=str(server.make_url("/tsa")), cert_pem=cert_path.read_bytes(), cert_path=cert_path
        )
    finally:
        await server.close()
