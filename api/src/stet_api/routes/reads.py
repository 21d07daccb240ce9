"""GET /v1/facts and GET /v1/history: permission-first reads."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from stet_api import queries
from stet_api.auth import authenticate
from stet_api.ratelimit import enforce_read_limit
from stet_api.routes.common import pool, settings
from stet_api.validation import (
    csv_list,
    history_cursor,
    next_history_cursor,
    query_bool,
    query_int,
    query_text,
)

bp = Blueprint("reads", __name__)


def _read_scope() -> queries.ReadScope:
    caller = authenticate()
    enforce_read_limit(caller)
    return queries.ReadScope(
        tenant_id=caller.tenant_id,
        subject_type=query_text(request.args, "subject_type"),
        subject_id=query_text(request.args, "subject_id"),
        requester_id=query_text(request.args, "requester_id"),
        requester_scopes=csv_list(request.args.get("requester_scopes"), "requester_scopes") or [],
    )


def _subject(scope: queries.ReadScope) -> dict[str, str]:
    return {"type": scope.subject_type, "id": scope.subject_id}


@bp.get("/v1/facts")
def facts():
    scope = _read_scope()
    field_keys = csv_list(request.args.get("field_keys"), "field_keys")
    body = pool().run(
        lambda cursor: queries.permitted_facts_json(cursor, scope, field_keys), single_statement=True
    )
    return Response(body, mimetype="application/json")


@bp.get("/v1/history")
def history():
    scope = _read_scope()
    field_key = query_text(request.args, "field_key", required=False)
    include_revoked = query_bool(request.args, "include_revoked")
    page_max = settings().history_page_max
    limit = query_int(request.args, "limit", 1, page_max, default=page_max)
    after = history_cursor(request.args.get("cursor"))
    rows = pool().run(
        lambda cursor: queries.permitted_history(cursor, scope, field_key, include_revoked, after, limit + 1),
        single_statement=True,
    )
    page, more = rows[:limit], len(rows) > limit
    next_cursor = next_history_cursor(page[-1]["created_at"], page[-1]["correction_id"]) if more else None
    return jsonify({"subject": _subject(scope), "history": page, "next_cursor": next_cursor})
