"""The evidence manifest: canonical JSON listing every file of a session with its size,
SHA-256 and SM3, and the session record's facts. Pure functions (no database).

Canonical form: `json.dumps(sort_keys=True, ensure_ascii=False, separators=(",", ":"))`,
UTF-8, no trailing newline. The signature and the timestamp are over exactly these bytes, so
the manifest is stored as bytes and never re-serialised.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives import hashes

from server.kernel import clock

FORMAT = "onedoor-evidence-manifest/1"
_CHUNK = 1 << 20


class FileKind(enum.StrEnum):
    """Every kind of file a manifest may list, and the package folder it goes in."""

    original = "original"  # a per-track WebM recording, as recorded
    composite = "composite"  # the one playable MP4 (issue #20 item 1)
    transcript_pdf = "transcript_pdf"  # the closed 笔录 as PDF (item 2: server.sessions.minutes)
    chat = "chat"  # the session's chat, exported as UTF-8 JSON

    @property
    def folder(self) -> str:
        return {
            FileKind.original: "originals",
            FileKind.composite: "composite",
            FileKind.transcript_pdf: "transcript",
            FileKind.chat: "chat",
        }[self]


@dataclass(frozen=True, slots=True)
class Digests:
    size: int
    sha256: str
    sm3: str


def digest_bytes(data: bytes) -> Digests:
    sm3 = hashes.Hash(hashes.SM3())
    sm3.update(data)
    return Digests(len(data), hashlib.sha256(data).hexdigest(), sm3.finalize().hex())


def digest_stream(fh: IO[bytes]) -> Digests:
    """Size, SHA-256 and SM3 of a stream in one pass (blocking)."""
    sha, sm3, size = hashlib.sha256(), hashes.Hash(hashes.SM3()), 0
    while chunk := fh.read(_CHUNK):
        sha.update(chunk)
        sm3.update(chunk)
        size += len(chunk)
    return Digests(size, sha.hexdigest(), sm3.finalize().hex())


def digest_file(path: Path) -> Digests:
    """Size, SHA-256 and SM3 of a file (blocking: run it in a thread)."""
    with path.open("rb") as fh:
        return digest_stream(fh)


def canonical(obj: Any) -> bytes:
    """The canonical JSON bytes of `obj` (sorted keys, no whitespace, UTF-8)."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _document(data: bytes, fmt: str, what: str) -> dict[str, Any]:
    """The JSON object in `data` whose "format" is `fmt`; ValueError naming `what` otherwise."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} is not UTF-8 JSON: {e}") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise ValueError(f"not a {fmt} {what}")
    return obj


def parse(data: bytes) -> dict[str, Any]:
    """The manifest in `data`. Raises ValueError if it is not a manifest of this format or
    not in canonical form (a re-serialised manifest no longer matches its signature)."""
    obj = _document(data, FORMAT, "manifest")
    if not isinstance(obj.get("files"), list):
        raise ValueError("manifest lists no files")
    return obj


DELETIONS_FORMAT = "onedoor-evidence-deletions/1"


def deletion_record(
    *,
    manifest: bytes,
    session_id: int,
    manifest_seq: int,
    signing_key_id: str,
    made_at: dict[str, str] | None,
    deleted: list[dict[str, Any]],
) -> bytes:
    """The canonical deletion record (deletions.json) of a package: which files the manifest
    lists were deleted by retention, when, bound to that manifest by its SHA-256. Signed like
    the manifest, so a file absent from a package is accounted for by the platform's key."""
    return canonical(
        {
            "format": DELETIONS_FORMAT,
            "session_id": session_id,
            "manifest_seq": manifest_seq,
            "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
            "signing_key_id": signing_key_id,
            "made_at": made_at,
            "deleted": deleted,
        }
    )


def parse_deletions(data: bytes, manifest: bytes) -> dict[str, dict[str, Any]]:
    """name -> entry of a deletion record that belongs to `manifest`. Raises ValueError if it
    is not one, or belongs to another manifest."""
    obj = _document(data, DELETIONS_FORMAT, "deletion record")
    if obj.get("manifest_sha256") != hashlib.sha256(manifest).hexdigest():
        raise ValueError("the deletion record belongs to another manifest")
    entries = obj.get("deleted")
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) for e in entries
    ):
        raise ValueError("the deletion record lists no files")
    return {str(e["name"]): e for e in entries}


def when(dt: datetime | None, tz: str) -> dict[str, str] | None:
    """A time as UTC ISO 8601 and in the district's zone (ISO with offset)."""
    if dt is None:
        return None
    utc = dt.astimezone(UTC)
    return {
        "utc": utc.isoformat().replace("+00:00", "Z"),
        "local": clock.to_local(utc, tz).isoformat(),
    }


def file_entry(name: str, kind: FileKind, digests: Digests, **about: Any) -> dict[str, Any]:
    """One `files` entry; `about` (e.g. the recording's track and times) goes under "about"."""
    entry: dict[str, Any] = {
        "name": name,
        "kind": kind.value,
        "size": digests.size,
        "sha256": digests.sha256,
        "sm3": digests.sm3,
    }
    if about:
        entry["about"] = about
    return entry


def safe_name(name: str) -> bool:
    """A package member name the manifest may use: relative, no '..', no backslash."""
    parts = name.split("/")
    return (
        bool(name)
        and not name.startswith("/")
        and "\\" not in name
        and all(p not in ("", ".", "..") for p in parts)
    )


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The first thing that does not match: `what` names it (a file name, "manifest.sig"…)."""

    what: str
    reason: str

    def __str__(self) -> str:
        return f"{self.what}: {self.reason}"


def check_file(entry: dict[str, Any], actual: Digests | None) -> Mismatch | None:
    """Compare one listed file with what was found (None: missing)."""
    name = str(entry.get("name"))
    if actual is None:
        return Mismatch(name, "file missing (文件缺失)")
    if actual.size != entry.get("size"):
        return Mismatch(name, f"size {actual.size} != {entry.get('size')} (大小不符)")
    if not hmac.compare_digest(actual.sha256, str(entry.get("sha256", ""))):
        return Mismatch(name, "SHA-256 differs (SHA-256 不符)")
    if not hmac.compare_digest(actual.sm3, str(entry.get("sm3", ""))):
        return Mismatch(name, "SM3 differs (SM3 不符)")
    return None


def sha256sums(files: Iterable[dict[str, Any]]) -> bytes:
    """`sha256sum -c` input for the listed files (two spaces: text mode, as sha256sum writes)."""
    return "".join(f"{f['sha256']}  {f['name']}\n" for f in files).encode()
