"""Personal data encrypted at rest (AES-256-GCM) plus keyed hashes for exact lookup.

Keys are derived from the deployment secret with HKDF, so no key material lives in code or in
the database. Ciphertexts carry the id of the key that wrote them (`v1:<key_id>:<base64>`), so
a rotated secret can still read old rows while `onedoor pii rotate` rewrites them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import unicodedata

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_key(secret: bytes, purpose: bytes) -> bytes:
    """A 32-byte key for one purpose from the deployment secret (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"onedoor", info=purpose).derive(secret)


class DecryptionFailed(Exception):
    pass


class PiiCipher:
    def __init__(self, secret: bytes, *, old_secrets: tuple[bytes, ...] = ()) -> None:
        self._keys: dict[str, AESGCM] = {}
        self.key_id = ""
        for index, s in enumerate((secret, *old_secrets)):
            key = derive_key(s, b"pii-encryption-v1")
            key_id = hashlib.sha256(key).hexdigest()[:8]
            self._keys[key_id] = AESGCM(key)
            if index == 0:
                self.key_id = key_id
        # Lookup hashes use the current secret only; rotation recomputes them.
        self._lookup_key = derive_key(secret, b"pii-lookup-v1")

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        ct = self._keys[self.key_id].encrypt(nonce, plaintext.encode(), self.key_id.encode())
        return f"v1:{self.key_id}:{base64.b64encode(nonce + ct).decode()}"

    def decrypt(self, token: str) -> str:
        try:
            version, key_id, payload = token.split(":", 2)
            aes = self._keys[key_id]
            raw = base64.b64decode(payload)
            if version != "v1":
                raise DecryptionFailed("unknown ciphertext version")
            return aes.decrypt(raw[:12], raw[12:], key_id.encode()).decode()
        except DecryptionFailed:
            raise
        except Exception as e:  # wrong key, tampered data, malformed token
            raise DecryptionFailed("cannot decrypt personal data") from e

    def needs_rotation(self, token: str) -> bool:
        return not token.startswith(f"v1:{self.key_id}:")

    def lookup_hash(self, value: str) -> str:
        normalized = unicodedata.normalize("NFKC", value).strip().upper().replace(" ", "")
        return hmac.new(self._lookup_key, normalized.encode(), hashlib.sha256).hexdigest()
