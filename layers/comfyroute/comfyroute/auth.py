"""API tokens. Only the SHA-256 of a token is stored; the token itself is shown once.

Standard library only: the authorizer runs this on every new connection."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from comfyroute.ports import ApiKeyRecord, ApiKeyStore

TOKEN_PREFIX = "crt_"
# Tokens are long random strings, so a plain SHA-256 (no salt, no slow KDF) is enough and
# keeps the authorizer to one key lookup.
MAX_TOKEN_LENGTH = 256


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def issue_token(keys: ApiKeyStore, user_id: str, label: str | None = None, token: str | None = None) -> str:
    """Store a new token for ``user_id`` and return it (the only time it is seen)."""
    if not user_id or len(user_id) > 128:
        raise ValueError("user id must be 1 to 128 characters")
    token = token or new_token()
    keys.put(ApiKeyRecord(key_hash=hash_token(token), user_id=user_id, created_at=time.time(), label=label))
    return token


def authenticate(keys: ApiKeyStore, token: str | None) -> str | None:
    """The user id a token belongs to, or None for a missing, unknown or revoked token."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    digest = hash_token(token)
    record = keys.get(digest)
    if record is None or record.revoked:
        return None
    # The lookup was by digest already; compare again in constant time for good measure.
    return record.user_id if hmac.compare_digest(record.key_hash, digest) else None
