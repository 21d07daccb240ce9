"""Tenant scoping and per-tenant API keys (docs/interfaces.md, "API keys").

Key lookups are cached in each worker process (KeyCache): a key read from the database
is trusted for STET_AUTH_CACHE_SECONDS (default 10), so revoking a key takes effect in
every worker within that bound; an unknown key id is remembered as unknown for as long.
Key ids not known as keys are looked up at most STET_AUTH_UNKNOWN_KEY_LOOKUPS_PER_SECOND
times per second and process (default 5): past that, the request is refused with 401
without asking the database, so random tokens cannot turn into database load (a known
key's refresh after its cache period is not counted). The price:
during such a flood, the first request with a brand-new key may be refused once.
Concurrent requests of one process for the same uncached key id share one lookup: a
burst of a real key's first requests, or of requests while the database hangs, spends
one unit of that budget, not one per request (each waiter gets the lookup's answer,
or its 503). A lookup that fails (database unreachable, pool exhausted) gives its unit
back: it learnt nothing about the key, so an outage answers 503, never 401.

Each key carries scopes (migration 011): read (facts, history, enforcement status, the
expected systems list), write (corrections, revoke), enforce (heartbeats only) and admin
(expected systems). An endpoint names the scope it needs; a key without it gets 403
MISSING_SCOPE naming the scope. A scope change, like a revocation, takes effect within the
cache period.

With STET_AUTH_REQUIRED=false, X-Tenant-Id alone is the credential, so it is accepted only
from the client networks in STET_UNAUTHENTICATED_NETWORKS (required then): any other client
still needs a key. Such a caller has every scope, as every caller had before scopes: the
switch keeps its old meaning, confined to the networks named.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import threading
import time
import uuid
from dataclasses import dataclass

from flask import current_app, request

from stet_api import queries
from stet_api.errors import ApiError, validation_error

SCOPES = ("read", "write", "enforce", "admin")
UNAUTHENTICATED_SCOPES = frozenset(SCOPES)
# The stet.ops.api_key module makes these (module_utils/api_tokens.py holds the same rule;
# tests/test_shared_rules.py holds the two together).
TOKEN_PATTERN = re.compile(r"stet_(?P<key_id>[0-9a-f]{32})_(?P<secret>[A-Za-z0-9_-]{43,256})")
# Compared against when a key id is unknown, so that path costs what a real check does.
_UNKNOWN_KEY_HASH = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True)
class Caller:
    tenant_id: uuid.UUID
    key_id: uuid.UUID | None
    scopes: frozenset[str]


@dataclass(frozen=True)
class _CachedKey:
    tenant_id: uuid.UUID | None  # None: no active key with this id
    secret_hash: str
    scopes: frozenset[str]
    expires: float


class _Lookup:
    """A database lookup of one key id in progress, which concurrent requests wait for."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.entry: _CachedKey | None = None
        self.error: Exception | None = None


class KeyCache:
    """The active API keys this process has looked up, with a bounded lookup rate for misses."""

    MAX_ENTRIES = 10000

    def __init__(self, ttl_seconds: int, miss_lookups_per_second: int) -> None:
        self._ttl = ttl_seconds
        self._entries: dict[uuid.UUID, _CachedKey] = {}
        self._in_flight: dict[uuid.UUID, _Lookup] = {}
        self._rate = float(miss_lookups_per_second)
        self._tokens = self._rate
        self._refilled = time.monotonic()
        self._lock = threading.Lock()

    def _may_look_up(self, now: float) -> bool:
        """Token bucket of database lookups for keys not in the cache; called under the lock."""
        self._tokens = min(self._rate, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def get(self, key_id: uuid.UUID) -> _CachedKey | None:
        """The cached key (tenant_id None if unknown), or None when the database was not asked."""
        now = time.monotonic()
        entry = self._entries.get(key_id)
        if entry is not None and entry.expires > now:
            return entry
        with self._lock:
            lookup = self._in_flight.get(key_id)
            leads = lookup is None
            if leads:
                # The budget is for key ids not known to be keys; a known key's refresh always runs.
                charged = entry is None or entry.tenant_id is None
                if charged and not self._may_look_up(now):
                    current_app.extensions["stet_metrics"].key_lookups.labels("skipped").inc()
                    return None
                lookup = self._in_flight[key_id] = _Lookup()
        if not leads:
            lookup.done.wait()
            if lookup.error is not None:
                raise lookup.error
            return lookup.entry
        try:
            lookup.entry = self._look_up(key_id, now)
            return lookup.entry
        except Exception as error:
            lookup.error = error
            if charged:
                with self._lock:
                    self._tokens = min(self._rate, self._tokens + 1)
            raise
        finally:
            with self._lock:
                del self._in_flight[key_id]
            lookup.done.set()

    def _look_up(self, key_id: uuid.UUID, now: float) -> _CachedKey:
        row = current_app.extensions["stet_pool"].run(
            lambda cursor: queries.api_key(cursor, key_id), single_statement=True
        )
        current_app.extensions["stet_metrics"].key_lookups.labels("found" if row else "unknown").inc()
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries = {k: v for k, v in self._entries.items() if v.expires > now}
        entry = _CachedKey(
            row["tenant_id"] if row else None,
            row["secret_hash"] if row else _UNKNOWN_KEY_HASH,
            frozenset(row["scopes"]) if row else frozenset(),
            now + self._ttl,
        )
        self._entries[key_id] = entry
        return entry


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


def _from_unauthenticated_network() -> bool:
    # Imported here: ratelimit imports Caller from this module.
    from stet_api.ratelimit import client_address

    try:
        address = ipaddress.ip_address(client_address())
    except ValueError:
        return False
    return any(address in network for network in current_app.config["STET"].unauthenticated_networks)


def authenticate(scope: str) -> Caller:
    """The calling tenant, proven by its API key, holding ``scope``; 401/403 otherwise.

    With auth switched off, a client from a named network is taken at its X-Tenant-Id.
    """
    tenant_id = tenant_from_header()
    token = _presented_token()
    if not token and not current_app.config["STET"].auth_required and _from_unauthenticated_network():
        return _with_scope(Caller(tenant_id, None, UNAUTHENTICATED_SCOPES), scope)
    if not token:
        raise _unauthenticated("an API key is required (Authorization: Bearer <token>)")
    match = TOKEN_PATTERN.fullmatch(token)
    if match is None:
        raise _unauthenticated("the API key is malformed")
    key_id = uuid.UUID(hex=match["key_id"])
    key = current_app.extensions["stet_keys"].get(key_id)
    presented_hash = hashlib.sha256(match["secret"].encode()).hexdigest()
    stored_hash = key.secret_hash if key else _UNKNOWN_KEY_HASH
    if not hmac.compare_digest(presented_hash, stored_hash) or key is None or key.tenant_id is None:
        raise _unauthenticated("the API key is unknown or revoked")
    if key.tenant_id != tenant_id:
        raise ApiError(403, "FORBIDDEN", "the API key does not belong to the tenant named in X-Tenant-Id")
    return _with_scope(Caller(tenant_id, key_id, key.scopes), scope)


def _with_scope(caller: Caller, scope: str) -> Caller:
    if scope not in caller.scopes:
        raise ApiError(
            403,
            "MISSING_SCOPE",
            f"this request needs the {scope!r} scope; the API key has {', '.join(sorted(caller.scopes))}",
            details={"required_scope": scope, "key_scopes": sorted(caller.scopes)},
        )
    return caller
