"""Heartbeats from enforcing systems, their status and the escalation derived from it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, jsonify, request

from stet_api import queries
from stet_api.auth import Caller, authenticate
from stet_api.ratelimit import enforce_heartbeat_limit, enforce_read_limit
from stet_api.routes.common import json_body, metrics, origin, pool, settings
from stet_api.validation import SYSTEM_FILTER, heartbeat_request

bp = Blueprint("enforcement", __name__)


@bp.post("/v1/enforcement/heartbeat")
def heartbeat():
    caller = authenticate("enforce")
    enforce_heartbeat_limit(caller)
    fields = heartbeat_request(json_body())
    stored = pool().run(
        lambda cursor: queries.insert_heartbeat(
            cursor, caller.tenant_id, fields["system_id"], fields["enforced_correction_version"], origin()
        ),
        single_statement=True,
    )
    return jsonify(stored), 201


def _system_status(row: dict[str, Any], evaluated_at: datetime, allowed_age: timedelta) -> str:
    if row["reported_at"] is None:
        return "MISSING"
    return "OK" if evaluated_at - row["reported_at"] <= allowed_age else "STALE"


LEVELS = ("NONE", "WARN", "CRITICAL")


def _level(systems: list[dict[str, Any]]) -> str:
    states = {s["status"] for s in systems}
    return "CRITICAL" if "MISSING" in states else "WARN" if "STALE" in states else "NONE"


def _evaluate(caller: Caller) -> tuple[datetime, list[dict[str, Any]]]:
    """Every system's status; an unfiltered evaluation also sets the tenant's level gauge."""
    system_id = SYSTEM_FILTER.parse(request.args)
    rows = pool().run(
        lambda cursor: queries.system_heartbeats(cursor, caller.tenant_id, system_id), single_statement=True
    )
    config = settings()
    allowed_age = timedelta(seconds=config.heartbeat_interval_seconds * config.heartbeat_grace_multiplier)
    evaluated_at = rows[0]["evaluated_at"] if rows else pool().run(queries.database_now)
    systems = [
        {
            "system_id": row["system_id"],
            "status": _system_status(row, evaluated_at, allowed_age),
            "enforced_correction_version": row["enforced_correction_version"],
            "reported_at": row["reported_at"],
        }
        for row in rows
    ]
    if system_id is None:
        metrics().escalation_level.labels(str(caller.tenant_id)).set(LEVELS.index(_level(systems)))
    return evaluated_at, systems


@bp.get("/v1/enforcement/status")
def status():
    caller = authenticate("read")
    enforce_read_limit(caller)
    evaluated_at, systems = _evaluate(caller)
    config = settings()
    return jsonify(
        {
            "evaluated_at": evaluated_at,
            "heartbeat_interval_seconds": config.heartbeat_interval_seconds,
            "heartbeat_grace_multiplier": config.heartbeat_grace_multiplier,
            "systems": systems,
        }
    )


@bp.get("/v1/enforcement/escalation")
def escalation():
    caller = authenticate("read")
    enforce_read_limit(caller)
    evaluated_at, systems = _evaluate(caller)
    counts = {state: sum(1 for s in systems if s["status"] == state) for state in ("OK", "STALE", "MISSING")}
    level = _level(systems)
    metrics().escalations.labels(level).inc()
    return jsonify(
        {
            "tenant_id": caller.tenant_id,
            "evaluated_at": evaluated_at,
            "escalation": level,
            "summary": {
                "total_systems": len(systems),
                "ok": counts["OK"],
                "stale": counts["STALE"],
                "missing": counts["MISSING"],
            },
            "affected_systems": [s for s in systems if s["status"] != "OK"],
        }
    )
