"""argon2id password hashing, run off the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # stateless parameters object; no I/O
# Verified when the username is unknown, so timing does not reveal which usernames exist.
_DUMMY_HASH = _hasher.hash("onedoor-dummy-password")


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def _verify() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(_verify)


MIN_PASSWORD_LENGTH = 10


def check_password_policy(password: str) -> None:
    """MLPS level 3 asks for complex passwords: length, and letters plus digits."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    if not any(c.isdigit() for c in password) or not any(c.isalpha() for c in password):
        raise ValueError("password must contain letters and digits")
