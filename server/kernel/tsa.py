"""RFC 3161 trusted timestamps (可信时间戳) over a manifest, with `rfc3161-client`.

`request_timestamp` sends a TimeStampReq (SHA-256 of the manifest, a nonce, certReq) to
ONEDOOR_TSA_URL and verifies the reply on receipt: status granted, the nonce, the message
imprint equals SHA-256(manifest), the CMS signature chains to the certificate(s) in
ONEDOOR_TSA_CERT (PEM: the TSA's certificate first, then its issuers, the last one the root;
a self-signed TSA certificate alone is its own root), and the signer certificate carries the
critical extendedKeyUsage timeStamping. The stored token is the whole TimeStampResp (DER), as
`openssl ts -verify -in manifest.tsr` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import aiohttp
from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

from server.kernel.errors import AppError

TIMEOUT_S = 20.0


class TimestampFailed(AppError):
    code, http_status, message_zh = "tsa_failed", 502, "可信时间戳服务未能签发或验证时间戳"


@dataclass(frozen=True, slots=True)
class TsaConfig:
    url: str
    #: The TSA certificate and its issuers (PEM, TSA first).
    certs_pem: bytes


@dataclass(frozen=True, slots=True)
class TimestampInfo:
    gen_time: datetime
    serial_number: int


def load_certs(pem: bytes) -> list[x509.Certificate]:
    certs = x509.load_pem_x509_certificates(pem)
    if not certs:
        raise ValueError("no certificate in the TSA certificate file")
    return certs


def verify_token(
    token: bytes, message: bytes, certs_pem: bytes, *, nonce: int | None = None
) -> TimestampInfo:
    """Check a TimeStampResp (DER) over `message` against the TSA certificates.

    Raises:
        VerificationError: malformed, not granted, signed by another key, or over another
            digest (the message is a different one).
    """
    try:
        certs = load_certs(certs_pem)
        response = decode_timestamp_response(token)
    except ValueError as e:
        raise VerificationError(f"unreadable timestamp or TSA certificate: {e}") from None
    builder = VerifierBuilder(tsa_certificate=certs[0], roots=[certs[-1]], nonce=nonce)
    for cert in certs[1:-1]:
        builder = builder.add_intermediate_certificate(cert)
    try:
        builder.build().verify_message(response, message)
    except VerificationError:
        raise
    except ValueError as e:  # e.g. unsupported algorithms in the token
        raise VerificationError(str(e)) from None
    info = response.tst_info
    return TimestampInfo(gen_time=info.gen_time, serial_number=info.serial_number)


async def request_timestamp(config: TsaConfig, message: bytes) -> bytes:
    """A verified TimeStampResp (DER) over SHA-256(`message`) from the TSA.

    Raises:
        TimestampFailed: the TSA could not be reached, refused, or its reply did not verify.
    """
    request = (
        TimestampRequestBuilder()
        .data(message)
        .hash_algorithm(HashAlgorithm.SHA256)
        .nonce(nonce=True)
        .cert_request(cert_request=True)
        .build()
    )
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)) as http,
            http.post(
                config.url,
                data=request.as_bytes(),
                headers={"Content-Type": "application/timestamp-query"},
            ) as resp,
        ):
            body = await resp.read()
            if resp.status != 200:
                raise TimestampFailed(f"TSA answered HTTP {resp.status}")
    except (aiohttp.ClientError, TimeoutError) as e:
        raise TimestampFailed(f"TSA unreachable: {type(e).__name__}: {e}") from None
    try:
        verify_token(body, message, config.certs_pem, nonce=request.nonce)
    except VerificationError as e:
        raise TimestampFailed(f"TSA reply does not verify: {e}") from None
    return body
