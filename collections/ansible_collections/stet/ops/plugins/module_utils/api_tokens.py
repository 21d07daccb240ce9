# Copyright: STET Ops contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""STET API tokens: stet_<key id as 32 hex>_<secret>, the API storing sha256(secret) only."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid

# The API reads keys with the same rule (api/src/stet_api/auth.py, held together by
# api/tests/test_shared_rules.py).
_TOKEN = re.compile(r"stet_(?P<key_id>[0-9a-f]{32})_(?P<secret>[A-Za-z0-9_-]{43,256})")


def hash_secret(secret):
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def new_token():
    """Return (key_id, token, secret_hash) of a freshly generated key."""
    key_id = uuid.uuid4()
    secret = secrets.token_urlsafe(32)  # 43 url-safe characters
    return key_id, f"stet_{key_id.hex}_{secret}", hash_secret(secret)


def token_matches(token, key_id, secret_hash):
    """Whether ``token`` is the token of the key ``key_id`` whose secret hashes to ``secret_hash``."""
    match = _TOKEN.fullmatch(token)
    if match is None or uuid.UUID(hex=match["key_id"]) != uuid.UUID(str(key_id)):
        return False
    return hmac.compare_digest(hash_secret(match["secret"]), secret_hash)


# What a key may do (the API's migration 011): read (facts, history, enforcement status),
# write (corrections, revoke), enforce (heartbeats only), admin (expected systems).
SCOPES = ("read", "write", "enforce", "admin")


def canonical_scopes(scopes):
    """``scopes`` without duplicates, in the order of SCOPES; ValueError naming an unknown one."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown scopes {', '.join(unknown)}; known: {', '.join(SCOPES)}")
    if not scopes:
        raise ValueError(f"scopes must name at least one of {', '.join(SCOPES)}")
    return [scope for scope in SCOPES if scope in scopes]
