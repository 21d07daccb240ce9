"""Tenant scoping and per-tenant API keys (docs/interfaces.md, "API keys")."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass

from flask import current_app, request

from stet_api import queries
from stet_api.errors import ApiError, validation_error

TOKEN_PATTERN = re.compile(r"stet_(?P<key_id>[0-9a-f]{32})_(?P<secret>[A-Za-z0-9_-]{43,256})")
# Compared against when a key id is unknown, so that path costs what a real check does.
_UNKNOWN_KEY_HASH = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class Caller:
    tenant_id: uuid.UUID
    key_id: uuid.UUID | None


def tenant_from_header() -> uuid.UUID:
    raw = request.headers.get("X-Tenant-Id")
    if raw is None:
        raise validation_error("header X-Tenant-Id is required", "X-Tenant-Id")
    try:
        return uuid.UUID(raw.strip())
    except ValueError:
        raise validation_error("header X-Tenant-Id must be a UUID", "X-Tenant-Id") from None


def _presented_token() -> str | None:
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        scheme, _, token = authorization.partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""
    return request.headers.get("X-API-Key")


def _unauthenticated(message: str) -> ApiError:
    return ApiError(401, "UNAUTHENTICATED", message, headers={"WWW-Authenticate": 'Bearer realm="stet"'})


def authenticate() -> Caller:
    """The calling tenant, proven by its API key unless auth is switched off."""
    tenant_id = tenant_from_header()
    if not current_app.config["STET"].auth_required:
        return Caller(tenant_id, None)
    token = _presented_token()
    if not token:
        raise _unauthenticated("an API key is required (Authorization: Bearer <token>)")
    match = TOKEN_PATTERN.fullmatch(token)
    if match is None:
        raise _unauthenticated("the API key is malformed")
    key_id = uuid.UUID(hex=match["key_id"])
    key = current_app.extensions["stet_pool"].run(
        lambda cursor: queries.api_key(cursor, key_id), single_statement=True
    )
    presented_hash = hashlib.sha256(match["secret"].encode()).hexdigest()
    stored_hash = key["secret_hash"] if key else _UNKNOWN_KEY_HASH
    if not hmac.compare_digest(presented_hash, stored_hash) or key is None:
        raise _unauthenticated("the API key is unknown or revoked")
    if key["tenant_id"] != tenant_id:
        raise ApiError(403, "FORBIDDEN", "the API key does not belong to the tenant named in X-Tenant-Id")
    return Caller(tenant_id, key_id)
