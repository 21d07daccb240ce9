"""GET /v1/facts and GET /v1/history: permission-first reads."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from stet_api import queries
from stet_api.auth import authenticate
from stet_api.routes.common import actor, pool
from stet_api.validation import csv_list, query_bool, query_text

bp = Blueprint("reads", __name__)


def _requester() -> tuple[tuple[str, str], str, list[str]]:
    subject = (query_text(request.args, "subject_type"), query_text(request.args, "subject_id"))
    requester_id = query_text(request.args, "requester_id")
    scopes = csv_list(request.args.get("requester_scopes"), "requester_scopes") or []
    return subject, requester_id, scopes


@bp.get("/v1/facts")
def facts():
    caller = authenticate()
    subject, requester_id, scopes = _requester()
    field_keys = csv_list(request.args.get("field_keys"), "field_keys")
    rows = pool().run(
        lambda cursor: queries.permitted_facts(
            cursor, caller.tenant_id, subject, requester_id, scopes, field_keys
        )
    )
    facts = [
        {
            "field_key": row["field_key"],
            "value": row["value"],
            "corrected_at": row["created_at"],
            "correction_id": row["correction_id"],
            "actor": actor(row),
        }
        for row in rows
    ]
    return jsonify({"subject": {"type": subject[0], "id": subject[1]}, "facts": facts})


@bp.get("/v1/history")
def history():
    caller = authenticate()
    subject, requester_id, scopes = _requester()
    field_key = query_text(request.args, "field_key", required=False)
    include_revoked = query_bool(request.args, "include_revoked")
    rows = pool().run(
        lambda cursor: queries.permitted_history(
            cursor, caller.tenant_id, subject, requester_id, scopes, field_key, include_revoked
        )
    )
    history = [
        {
            "correction_id": row["correction_id"],
            "field_key": row["field_key"],
            "value": row["value"],
            "class": row["class"],
            "status": row["status"],
            "supersedes": row["supersedes"],
            "created_at": row["created_at"],
            "actor": actor(row),
        }
        for row in rows
    ]
    return jsonify({"subject": {"type": subject[0], "id": subject[1]}, "history": history})
