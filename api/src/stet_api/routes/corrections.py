"""POST /v1/corrections and POST /v1/corrections/{id}/revoke."""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

import psycopg2.errors
from flask import Blueprint, jsonify

from stet_api import queries
from stet_api.auth import Caller, authenticate
from stet_api.db import Cursor
from stet_api.errors import ApiError, TransactionConflict, not_found, validation_error
from stet_api.ratelimit import enforce_write_limit
from stet_api.routes.common import json_body, origin, pool
from stet_api.validation import CORRECTION_ID, correction_request, revoke_request

bp = Blueprint("corrections", __name__)


def _payload_hash(body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _created(correction_id: uuid.UUID, supersedes: uuid.UUID | None, created_at: Any) -> dict[str, Any]:
    return {
        "correction_id": correction_id,
        "status": "ACTIVE",
        "supersedes": supersedes,
        "created_at": created_at,
    }


@bp.post("/v1/corrections")
def create_correction():
    caller = authenticate("write")
    enforce_write_limit(caller)
    body = json_body()
    fields = correction_request(body)
    payload_hash = _payload_hash(body)
    try:
        status, result = pool().run(lambda cursor: _write(cursor, caller, fields, payload_hash))
    except (psycopg2.errors.UniqueViolation, TransactionConflict):
        # A concurrent write to the same field won, or deadlocked with ours: ours rolled back whole.
        raise TransactionConflict(
            "another correction to this field was written concurrently; read and retry"
        ) from None
    return jsonify(result), status


def _write(cursor: Cursor, caller: Caller, fields: dict[str, Any], payload_hash: str) -> tuple[int, dict]:
    tenant_id, key = caller.tenant_id, fields["idempotency_key"]
    correction_id = uuid.uuid4()
    if not queries.claim_idempotency_key(cursor, tenant_id, key, correction_id, payload_hash):
        earlier = queries.idempotent_replay(cursor, tenant_id, key)
        if earlier is None or earlier["payload_hash"] != payload_hash:
            raise ApiError(
                409, "IDEMPOTENCY_CONFLICT", "idempotency_key was already used with a different payload"
            )
        return 200, _created(earlier["correction_id"], earlier["supersedes"], earlier["created_at"])

    subject = (fields["subject_type"], fields["subject_id"], fields["field_key"])
    if fields["supersedes"] is not None:
        target = queries.active_correction_for_update(cursor, tenant_id, fields["supersedes"])
        if target is None:
            raise validation_error("supersedes must name an ACTIVE correction of this tenant", "supersedes")
        if (target["subject_type"], target["subject_id"], target["field_key"]) != subject:
            raise validation_error(
                "supersedes must name a correction of the same subject and field", "supersedes"
            )
    superseded = queries.supersede_active(cursor, tenant_id, *subject)
    created_at = queries.insert_correction(
        cursor,
        {
            "correction_id": correction_id,
            "tenant_id": tenant_id,
            "subject_type": fields["subject_type"],
            "subject_id": fields["subject_id"],
            "field_key": fields["field_key"],
            "value": fields["value"],
            "class": fields["class"],
            "supersedes": superseded,
            "permissions": fields["permissions"],
            "actor_type": fields["actor"]["type"],
            "actor_id": fields["actor"]["id"],
            "idempotency_key": key,
            "origin": origin(),
        },
    )
    return 201, _created(correction_id, superseded, created_at)


@bp.post("/v1/corrections/<correction_id>/revoke")
def revoke_correction(correction_id: str):
    caller = authenticate("write")
    enforce_write_limit(caller)
    target = CORRECTION_ID.parse_raw(correction_id, CORRECTION_ID.name)
    fields = revoke_request(json_body())

    def revoke(cursor: Cursor) -> dict[str, Any]:
        revoked = queries.revoke_correction(
            cursor, caller.tenant_id, target, fields["reason"], fields["actor"]
        )
        if revoked is None:
            revoked = queries.revoked_correction(cursor, caller.tenant_id, target)
        if revoked is None:
            raise not_found("no correction with this id in this tenant")
        if fields.get("erase"):
            queries.erase_revoked_value(cursor, caller.tenant_id, target)
            revoked = queries.revoked_correction(cursor, caller.tenant_id, target)
        return revoked

    return jsonify(pool().run(revoke)), 200
