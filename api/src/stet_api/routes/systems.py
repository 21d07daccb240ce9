"""The per-tenant registry of enforcement systems expected to report heartbeats."""

from __future__ import annotations

import logging

from flask import Blueprint, g, jsonify

from stet_api import queries
from stet_api.auth import authenticate
from stet_api.errors import not_found
from stet_api.ratelimit import enforce_read_limit, enforce_write_limit
from stet_api.routes.common import pool
from stet_api.validation import SYSTEM_ID

bp = Blueprint("systems", __name__)
# Removing a system ends its MISSING/STALE escalation: every removal is on record.
AUDIT = logging.getLogger("stet_api.audit")


@bp.get("/v1/enforcement/systems")
def list_systems():
    caller = authenticate("read")
    enforce_read_limit(caller)
    rows = pool().run(lambda cursor: queries.expected_systems(cursor, caller.tenant_id))
    return jsonify({"systems": rows})


@bp.put("/v1/enforcement/systems/<system_id>")
def expect_system(system_id: str):
    caller = authenticate("admin")
    enforce_write_limit(caller)
    system_id = SYSTEM_ID.parse_raw(system_id, SYSTEM_ID.name)
    created = pool().run(lambda cursor: queries.add_expected_system(cursor, caller.tenant_id, system_id))
    return jsonify({"system_id": system_id, "expected": True}), 201 if created else 200


@bp.delete("/v1/enforcement/systems/<system_id>")
def forget_system(system_id: str):
    caller = authenticate("admin")
    enforce_write_limit(caller)
    system_id = SYSTEM_ID.parse_raw(system_id, SYSTEM_ID.name)
    if not pool().run(lambda cursor: queries.remove_expected_system(cursor, caller.tenant_id, system_id)):
        raise not_found("this system is not registered as expected for this tenant")
    AUDIT.warning(
        "expected system removed: tenant_id=%s system_id=%r key_id=%s request_id=%s",
        caller.tenant_id,
        system_id,
        caller.key_id,
        g.request_id,
    )
    return "", 204
