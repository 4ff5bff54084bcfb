"""The deployment's evidence signing keys: Ed25519, derived from the deployment secret.

    secret ──HKDF(SHA-256, info="evidence-signing-ed25519-v1")──► 32-byte seed ──► Ed25519 key
    key id = first 16 hex digits of SHA-256(raw public key)

Like the PII keys (server.kernel.crypto.PiiCipher), the secrets in
ONEDOOR_PREVIOUS_SECRET_KEYS still verify what they signed; only the current one signs. The
public keys are printed as PEM by `onedoor evidence pubkey`, for third parties (openssl).
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from server.kernel.crypto import derive_key

PURPOSE = b"evidence-signing-ed25519-v1"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_pem(data: bytes) -> Ed25519PublicKey:
    """Raises ValueError for anything but an Ed25519 public key in PEM."""
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


class EvidenceKeys:
    """Signs with the current secret's key; verifies with it and every previous one."""

    def __init__(self, secret: bytes, *, previous: tuple[bytes, ...] = ()) -> None:
        if not secret:
            raise ValueError("evidence keys need a non-empty secret")
        self._private = Ed25519PrivateKey.from_private_bytes(derive_key(secret, PURPOSE))
        self.key_id = key_id(self._private.public_key())
        self.public_keys: dict[str, Ed25519PublicKey] = {}
        for s in (secret, *(p for p in previous if p)):
            public = Ed25519PrivateKey.from_private_bytes(derive_key(s, PURPOSE)).public_key()
            self.public_keys.setdefault(key_id(public), public)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.public_keys[self.key_id]

    def sign(self, data: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature over `data`."""
        return self._private.sign(data)

    def verify(self, data: bytes, signature: bytes, *, signed_by: str) -> bool:
        """True if `signature` over `data` was made by the key `signed_by` (current or
        previous); False for an unknown key or a bad signature."""
        public = self.public_keys.get(signed_by)
        return public is not None and verify_with(public, data, signature)


def verify_with(public: Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    try:
        public.verify(signature, data)
    except InvalidSignature:
        return False
    return True
