"""Operations endpoints: liveness, readiness, metrics, the OpenAPI document."""

from __future__ import annotations

from flask import Blueprint, Response, g, jsonify

from stet_api import queries
from stet_api.errors import ApiError, error_body
from stet_api.metrics import CONTENT_TYPE
from stet_api.migrations_bundle import expected_version
from stet_api.openapi import openapi_document
from stet_api.routes.common import metrics, pool, settings

bp = Blueprint("ops", __name__)


@bp.get("/health")
def health():
    return jsonify({"status": "ok"})


@bp.get("/ready")
def ready():
    """200 when the database answers and its schema is inside this code's window: at the
    version the code expects, or newer when every newer migration declares that older code
    still runs on it (schema_window, migration 010: expand/contract)."""
    expected = expected_version()
    try:
        applied = pool().run(queries.applied_migration_version)
        newer = pool().run(lambda cursor: queries.migrations_after(cursor, expected)) if applied else []
    except ApiError as error:
        return _not_ready(error.code, error.message, {"database": "unreachable"})
    state = {"database": "ok", "migrations": {"applied": applied, "expected": expected}}
    if applied is None or applied < expected:
        message = f"database schema is at migration {applied}, this code expects {expected}"
        return _not_ready("MIGRATIONS_NOT_CURRENT", message, state)
    breaking = [f"{number:03d}_{name}" for number, name, older_code_runs in newer if not older_code_runs]
    if breaking:
        message = (
            f"database schema is at migration {applied}, past this code's window ({expected}):"
            f" older code does not run on {', '.join(breaking)}"
        )
        return _not_ready("SCHEMA_OUTSIDE_WINDOW", message, {**state, "incompatible": breaking})
    return jsonify({"status": "ready", **state})


def _not_ready(code: str, message: str, state: dict):
    return jsonify({"status": "unavailable", **state, **error_body(code, message, g.request_id)}), 503


@bp.get("/metrics")
def prometheus_metrics():
    return Response(metrics().exposition(), content_type=CONTENT_TYPE)


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document(settings().history_page_max))
