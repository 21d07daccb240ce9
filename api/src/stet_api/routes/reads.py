"""GET /v1/facts and GET /v1/history: permission-first reads."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from stet_api import queries
from stet_api.auth import authenticate
from stet_api.ratelimit import enforce_read_limit
from stet_api.routes.common import pool, settings
from stet_api.validation import (
    CURSOR,
    FIELD_KEY,
    FIELD_KEYS,
    INCLUDE_REVOKED,
    REQUESTER_ID,
    REQUESTER_SCOPES,
    SUBJECT_ID,
    SUBJECT_TYPE,
    history_limit,
    next_history_cursor,
)

bp = Blueprint("reads", __name__)


def _read_scope() -> queries.ReadScope:
    caller = authenticate("read")
    enforce_read_limit(caller)
    return queries.ReadScope(
        tenant_id=caller.tenant_id,
        subject_type=SUBJECT_TYPE.parse(request.args),
        subject_id=SUBJECT_ID.parse(request.args),
        requester_id=REQUESTER_ID.parse(request.args),
        requester_scopes=REQUESTER_SCOPES.parse(request.args) or [],
    )


def _subject(scope: queries.ReadScope) -> dict[str, str]:
    return {"type": scope.subject_type, "id": scope.subject_id}


@bp.get("/v1/facts")
def facts():
    scope = _read_scope()
    field_keys = FIELD_KEYS.parse(request.args)
    body = pool().run(
        lambda cursor: queries.permitted_facts_json(cursor, scope, field_keys), single_statement=True
    )
    return Response(body, mimetype="application/json")


@bp.get("/v1/history")
def history():
    scope = _read_scope()
    field_key = FIELD_KEY.parse(request.args)
    include_revoked = INCLUDE_REVOKED.parse(request.args)
    limit = history_limit(settings().history_page_max).parse(request.args)
    after = CURSOR.parse(request.args)
    rows = pool().run(
        lambda cursor: queries.permitted_history(cursor, scope, field_key, include_revoked, after, limit + 1),
        single_statement=True,
    )
    page, more = rows[:limit], len(rows) > limit
    next_cursor = next_history_cursor(page[-1]["created_at"], page[-1]["correction_id"]) if more else None
    return jsonify({"subject": _subject(scope), "history": page, "next_cursor": next_cursor})
