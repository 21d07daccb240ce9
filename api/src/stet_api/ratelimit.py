"""Fixed-window write limits counted in PostgreSQL, so they hold across workers and hosts."""

from __future__ import annotations

import ipaddress
import math

from flask import current_app, g, request

from stet_api import queries
from stet_api.auth import Caller
from stet_api.errors import ApiError

WINDOW_SECONDS = 60


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


def enforce_write_limit(caller: Caller) -> None:
    """Count this write; raise 429 past the limit. Headers go on every response (g)."""
    limit = current_app.config["STET"].rate_limit_writes_per_minute
    if limit == 0:
        return
    pool = current_app.extensions["stet_pool"]
    hits, window_end, seconds_left = pool.run(
        lambda cursor: queries.count_write(cursor, client_key(caller), WINDOW_SECONDS)
    )
    reset_epoch = math.ceil(window_end.timestamp())
    g.rate_limit_headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(limit - hits, 0)),
        "X-RateLimit-Reset": str(reset_epoch),
    }
    if hits > limit:
        retry_after = max(seconds_left, 1)
        raise ApiError(
            429,
            "RATE_LIMITED",
            f"more than {limit} writes per minute; retry after {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
