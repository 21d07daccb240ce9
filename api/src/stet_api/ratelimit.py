"""Per-client budgets in fixed one-minute windows, counted in PostgreSQL across workers and hosts.

Three budgets, each per client (the API key; without auth, tenant + client address):
- writes (corrections, revokes, expected systems) and heartbeats: every request is counted
  in PostgreSQL by one upsert, so the limit is exact across every worker and host;
- reads (every GET under /v1): counted in the process; a process adds its count to the
  shared window with the client's first read after SYNC_SECONDS (1 s) have passed since
  its last sync, and decides on the shared total as of then plus its own reads since.
  A read then costs no database round trip of its own, and a client can exceed its limit
  only by what the other processes served it since their last sync.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from flask import current_app, g, request

from stet_api import queries
from stet_api.auth import Caller
from stet_api.errors import ApiError

WINDOW_SECONDS = 60
SYNC_SECONDS = 1.0


def client_address() -> str:
    """The client's address; X-Forwarded-For counts only when the peer is a trusted proxy."""
    trusted = current_app.config["STET"].trusted_proxies
    peer = request.remote_addr or "unknown"
    if peer not in trusted:
        return peer
    # Walk from the nearest hop outwards and stop at the first address we do not trust.
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break
        if hop not in trusted:
            return hop
    return peer


def client_key(caller: Caller) -> str:
    if caller.key_id is not None:
        return f"key:{caller.key_id}"
    return f"tenant:{caller.tenant_id}:addr:{client_address()}"


def _count(client: str, hits: int = 1) -> tuple[int, datetime, int]:
    return current_app.extensions["stet_pool"].run(
        lambda cursor: queries.count_hits(cursor, client, WINDOW_SECONDS, hits)
    )


def _apply(limit: int, what: str, hits: int, window_end: datetime, seconds_left: int) -> None:
    """Rate-limit headers for this response (g); 429 past the limit."""
    g.rate_limit_headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(limit - hits, 0)),
        "X-RateLimit-Reset": str(math.ceil(window_end.timestamp())),
    }
    if hits > limit:
        retry_after = max(seconds_left, 1)
        raise ApiError(
            429,
            "RATE_LIMITED",
            f"more than {limit} {what} per minute; retry after {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )


def enforce_write_limit(caller: Caller) -> None:
    limit = current_app.config["STET"].rate_limit_writes_per_minute
    if limit:
        _apply(limit, "writes", *_count(client_key(caller)))


def enforce_heartbeat_limit(caller: Caller) -> None:
    limit = current_app.config["STET"].rate_limit_heartbeats_per_minute
    if limit:
        _apply(limit, "heartbeats", *_count("heartbeat:" + client_key(caller)))


def enforce_read_limit(caller: Caller) -> None:
    limit = current_app.config["STET"].rate_limit_reads_per_minute
    if limit:
        _apply(limit, "reads", *current_app.extensions["stet_read_counter"].hit("read:" + client_key(caller)))


@dataclass
class _Window:
    start: float  # Unix time the window began, on this host's clock
    shared: int = 0  # hits of every process, as of the last sync
    unsynced: int = 0  # this process's hits since
    synced_at: float = 0.0
    end: datetime | None = None
    seconds_left_at_sync: int = WINDOW_SECONDS


class SyncedCounter:
    """Read hits counted per process, synced to the shared window at most once a second per client."""

    def __init__(self, sync_seconds: float = SYNC_SECONDS) -> None:
        self._sync_seconds = sync_seconds
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def hit(self, client: str) -> tuple[int, datetime, int]:
        now = time.time()
        start = now - now % WINDOW_SECONDS
        with self._lock:
            window = self._windows.get(client)
            if window is None or window.start != start:
                if len(self._windows) > 10000:
                    self._windows = {k: w for k, w in self._windows.items() if w.start == start}
                window = self._windows[client] = _Window(start)
            window.unsynced += 1
            due = window.end is None or now - window.synced_at >= self._sync_seconds
            if not due:
                left = window.seconds_left_at_sync - int(now - window.synced_at)
                return window.shared + window.unsynced, window.end, left
            hits, window.unsynced, window.synced_at = window.unsynced, 0, now
        shared, end, left = _count(client, hits)
        with self._lock:
            window.shared, window.end, window.seconds_left_at_sync = shared, end, left
            return shared + window.unsynced, end, left
