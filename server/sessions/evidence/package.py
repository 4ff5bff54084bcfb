"""The evidence package (证据包): a ZIP a third party can check with openssl and sha256sum
alone, and `verify_package`, which checks it the same way and names the first thing that
does not match.

    manifest.json   the signed manifest (canonical JSON, exactly the signed bytes)
    manifest.sig    its Ed25519 signature, raw 64 bytes (openssl pkeyutl -rawin -sigfile)
    manifest.tsr    RFC 3161 TimeStampResp over SHA-256(manifest.json), if timestamped
    tsa.pem         the TSA certificate(s) the timestamp was verified against, if any
    pubkey.pem      the deployment's public key that signed it (PEM, SubjectPublicKeyInfo)
    SHA256SUMS      `sha256sum -c` input derived from manifest.json (the manifest rules)
    README.txt      how to verify, in Chinese
    deletions.json  if retention deleted files: which, when, bound to manifest.json's SHA-256
    deletions.sig   its Ed25519 signature (same key, or deletions-pubkey.pem after a rotation)
    originals/…  chat/…  (later: composite/…, transcript/…)   the files
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rfc3161_client import VerificationError

from server.kernel.tsa import TimestampInfo, verify_token
from server.sessions.evidence import manifest as mf
from server.sessions.evidence.keys import key_id, load_public_pem, verify_with
from server.sessions.evidence.service import PackagePlan

MANIFEST, SIGNATURE, TIMESTAMP = "manifest.json", "manifest.sig", "manifest.tsr"
PUBKEY, TSA_CERT, SUMS, README = "pubkey.pem", "tsa.pem", "SHA256SUMS", "README.txt"
DELETIONS, DELETIONS_SIG, DELETIONS_KEY = "deletions.json", "deletions.sig", "deletions-pubkey.pem"
_META = frozenset(
    {MANIFEST, SIGNATURE, TIMESTAMP, PUBKEY, TSA_CERT, SUMS, README}
    | {DELETIONS, DELETIONS_SIG, DELETIONS_KEY}
)

README_TEXT = """\
会话证据包说明
==============

本证据包由 onedoor 信访接待与调解平台生成，包含一次接访或调解会话的全部文件及其清单。
清单（manifest.json）列出每个文件的名称、类别、大小、SHA-256 和 SM3 摘要，以及会话的
案件编号、类型、时间（UTC 及本地时区）、参会人及其角色、录音录像同意情况和结果。
清单由平台的 Ed25519 签名密钥签名（manifest.sig）；如配置了可信时间戳服务，还附有
RFC 3161 时间戳（manifest.tsr）。

文件
----
manifest.json  会话清单（签名对象，请勿修改，任何改动都会使签名失效）
manifest.sig   清单的 Ed25519 签名（64 字节原始签名）
manifest.tsr   可信时间戳回执（RFC 3161，如有）
tsa.pem        时间戳服务机构证书（如有）
pubkey.pem     平台签名公钥（请与平台公开发布的公钥核对：onedoor evidence pubkey）
SHA256SUMS     由清单导出的 SHA-256 校验列表
deletions.json 保存期限删除记录（如有）：哪些文件于何时按保存期限删除，并以清单的 SHA-256 绑定
deletions.sig  删除记录的 Ed25519 签名（如有；密钥轮换后另附 deletions-pubkey.pem）
originals/     各参会人各路音视频原始录像（WebM）
chat/          文字交流记录（UTF-8 JSON）

只用 openssl 和 sha256sum 校验（解压后在本目录执行）
------------------------------------------------------
1. 校验清单签名（应输出 Signature Verified Successfully）：
   openssl pkeyutl -verify -pubin -inkey pubkey.pem -rawin -in manifest.json -sigfile manifest.sig

2. 校验可信时间戳（如有 manifest.tsr，应输出 Verification: OK）：
   openssl ts -verify -in manifest.tsr -data manifest.json -CAfile tsa.pem
   查看时间戳时间：openssl ts -reply -in manifest.tsr -text

3. 校验每个文件（每行应输出 OK 或“成功”）：
   sha256sum -c SHA256SUMS
   SHA256SUMS 由清单导出；请核对其中每个摘要与 manifest.json 中 "sha256" 一致，例如：
   grep -o '"sha256":"[0-9a-f]*"' manifest.json
   如需 SM3：openssl dgst -sm3 文件名，与清单中 "sm3" 核对。

4. 核对公钥：pubkey.pem 应与平台公布的签名公钥一致（其 SHA-256 前 16 位即清单中的
   signing_key_id：openssl pkey -pubin -in pubkey.pem -outform DER | tail -c 32 | sha256sum）。

录像按保存期限删除后，证据包只含清单和未删除的文件；清单仍可校验。已删除的文件列在
deletions.json 中（文件名、SHA-256、删除时间），该记录由平台签名：
   openssl pkeyutl -verify -pubin -inkey pubkey.pem -rawin -in deletions.json -sigfile deletions.sig
   （如附有 deletions-pubkey.pem，用它代替 pubkey.pem）
   sha256sum manifest.json   # 应与 deletions.json 中 "manifest_sha256" 一致
此时 sha256sum -c SHA256SUMS 只列出包内现有的文件。

用平台命令校验：onedoor evidence verify 证据包.zip（输出第一个不符之处，退出码 0 表示全部通过）。
"""


def write_package(target: IO[bytes], plan: PackagePlan) -> None:
    """Write the ZIP (blocking: run it in a thread). Recordings are stored, not deflated."""
    stored = plan.stored
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, stored.manifest)
        zf.writestr(SIGNATURE, stored.signature)
        if stored.timestamp_token is not None:
            zf.writestr(TIMESTAMP, stored.timestamp_token)
            if plan.tsa_certs_pem:
                zf.writestr(TSA_CERT, plan.tsa_certs_pem)
        zf.writestr(PUBKEY, plan.public_key_pem)
        present = [f for f in stored.files if str(f["name"]) not in plan.deleted]
        zf.writestr(SUMS, mf.sha256sums(present))
        zf.writestr(README, README_TEXT.encode())
        for name, path in plan.paths.items():
            zf.write(path, name, compress_type=zipfile.ZIP_STORED)
        for name, data in plan.inline.items():
            zf.writestr(name, data)
        if plan.deletions is not None and plan.deletions_signature is not None:
            zf.writestr(DELETIONS, plan.deletions)
            zf.writestr(DELETIONS_SIG, plan.deletions_signature)
            if plan.deletions_key_pem is not None:
                zf.writestr(DELETIONS_KEY, plan.deletions_key_pem)


@dataclass(slots=True)
class Verification:
    """What `verify_package` found: `first` is the first mismatch (None: all verified)."""

    first: mf.Mismatch | None = None
    key_id: str = ""
    #: How the key was trusted: "given", "deployment" (current or previous) or "package".
    trusted_by: str = ""
    timestamp: TimestampInfo | None = None
    checked: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    #: Absent files the package's signed deletion record accounts for: name -> deleted at
    #: (UTC ISO 8601).
    deleted: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.first is None


def _digest_member(zf: zipfile.ZipFile, name: str) -> mf.Digests:
    with zf.open(name) as fh:
        return mf.digest_stream(fh)


def verify_package(
    path: Path,
    *,
    trusted_keys: dict[str, Ed25519PublicKey] | None = None,
    trusted_by: str = "given",
    tsa_certs_pem: bytes | None = None,
    allow_missing: bool = False,
) -> Verification:
    """Check the package: the manifest's signature (by a trusted key; without any, the
    package's own pubkey.pem), the timestamp if present (against `tsa_certs_pem`, else the
    package's tsa.pem), then every listed file's size, SHA-256 and SM3 in order.

    A file the manifest lists may be absent only if the package's deletion record (signed by
    a trusted key, bound to this manifest) lists it with the same SHA-256, or `allow_missing`.
    Stops at the first mismatch.
    """
    out = Verification()
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        out.first = mf.Mismatch(str(path), f"not a readable ZIP: {e}")
        return out
    with zf:
        names = set(zf.namelist())
        for required in (MANIFEST, SIGNATURE):
            if required not in names:
                out.first = mf.Mismatch(required, "missing from the package (包内缺少)")
                return out
        data, signature = zf.read(MANIFEST), zf.read(SIGNATURE)
        try:
            manifest = mf.parse(data)
        except ValueError as e:
            out.first = mf.Mismatch(MANIFEST, str(e))
            return out
        out.key_id = str(manifest.get("signing_key_id", ""))
        keys = trusted_keys
        out.trusted_by = trusted_by
        if not keys:
            out.trusted_by = "package"
            try:
                own = load_public_pem(zf.read(PUBKEY))
            except (KeyError, ValueError) as e:
                out.first = mf.Mismatch(PUBKEY, f"no usable public key: {e}")
                return out
            keys = {key_id(own): own}
        public = keys.get(out.key_id)
        if public is None:
            out.first = mf.Mismatch(
                MANIFEST, f"signed by key {out.key_id!r}, not a trusted key (签名密钥不受信任)"
            )
            return out
        if not verify_with(public, data, signature):
            out.first = mf.Mismatch(
                MANIFEST,
                "signature does not match (签名不符: manifest.json 或 manifest.sig 被改动)",
            )
            return out
        out.checked.append(SIGNATURE)
        if TIMESTAMP in names:
            certs = tsa_certs_pem or (zf.read(TSA_CERT) if TSA_CERT in names else None)
            if certs is None:
                out.first = mf.Mismatch(TIMESTAMP, "no TSA certificate to verify it with")
                return out
            try:
                out.timestamp = verify_token(zf.read(TIMESTAMP), data, certs)
            except VerificationError as e:
                out.first = mf.Mismatch(TIMESTAMP, f"timestamp does not verify: {e} (时间戳不符)")
                return out
            out.checked.append(TIMESTAMP)
        deleted: dict[str, dict[str, object]] = {}
        if DELETIONS in names or DELETIONS_SIG in names:
            found, deleted = _deletions(zf, names, data, keys, trusted_by=out.trusted_by)
            if found is not None:
                out.first = found
                return out
            out.checked.append(DELETIONS_SIG)
        for entry in manifest["files"]:
            name = str(entry.get("name", ""))
            if not mf.safe_name(name) or name in _META:
                out.first = mf.Mismatch(name, "unsafe file name in the manifest")
                return out
            if name not in names:
                gone = deleted.get(name)
                if gone is not None:
                    if gone.get("sha256") != entry.get("sha256"):
                        out.first = mf.Mismatch(
                            DELETIONS, f"lists {name} with another SHA-256 than the manifest"
                        )
                        return out
                    at = gone.get("deleted_at")
                    out.deleted[name] = str(at.get("utc", "")) if isinstance(at, dict) else ""
                    continue
                if allow_missing:
                    out.missing.append(name)
                    continue
                out.first = mf.check_file(entry, None)
                return out
            found = mf.check_file(entry, _digest_member(zf, name))
            if found is not None:
                out.first = found
                return out
            out.checked.append(name)
    return out


def _deletions(
    zf: zipfile.ZipFile,
    names: set[str],
    manifest: bytes,
    keys: dict[str, Ed25519PublicKey],
    *,
    trusted_by: str,
) -> tuple[mf.Mismatch | None, dict[str, dict[str, object]]]:
    """The package's deletion record, checked: signed by a trusted key (or, when the package
    is trusted by its own key, by its deletions-pubkey.pem) and bound to `manifest`."""
    if DELETIONS not in names or DELETIONS_SIG not in names:
        return mf.Mismatch(DELETIONS, "deletion record without its signature, or the reverse"), {}
    record, signature = zf.read(DELETIONS), zf.read(DELETIONS_SIG)
    try:
        entries = mf.parse_deletions(record, manifest)
        signed_by = str(json.loads(record)["signing_key_id"])
    except (ValueError, KeyError) as e:
        return mf.Mismatch(DELETIONS, f"{e} (删除记录不符)"), {}
    usable = dict(keys)
    if trusted_by == "package" and DELETIONS_KEY in names:
        try:
            own = load_public_pem(zf.read(DELETIONS_KEY))
        except ValueError as e:
            return mf.Mismatch(DELETIONS_KEY, f"no usable public key: {e}"), {}
        usable.setdefault(key_id(own), own)
    public = usable.get(signed_by)
    if public is None:
        return mf.Mismatch(DELETIONS, f"signed by key {signed_by!r}, not a trusted key"), {}
    if not verify_with(public, record, signature):
        return mf.Mismatch(
            DELETIONS, "signature does not match (删除记录签名不符: deletions.json 被改动)"
        ), {}
    return None, entries
