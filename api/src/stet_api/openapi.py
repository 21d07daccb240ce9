"""The OpenAPI 3.0 document the app serves at /openapi.json (and schemathesis tests against).

Requests are not described here: their bodies and parameters are the models of
validation.py, which also check them, so a limit is written once. Responses are
described here; the schemathesis run checks every answer against them.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from stet_api import validation as v
from stet_api.migrations_bundle import expected_version

STRING = {"type": "string"}
UUID = v.Uuid().schema()
NULLABLE_UUID = v.Uuid(nullable=True).schema()
TIMESTAMP = {"type": "string", "format": "date-time"}
NULLABLE_TIMESTAMP = {**TIMESTAMP, "nullable": True}
ERASED_AT = {
    **NULLABLE_TIMESTAMP,
    "description": "when a revoke with erase scrubbed the value (which is then null); else null",
}
# What the API answers with: stored values, not bounded like requests.
ACTOR_OUT = {
    "type": "object",
    "required": ["type", "id"],
    "properties": {"type": STRING, "id": STRING},
}
SUBJECT_OUT = ACTOR_OUT
CLASS = v.Choice(v.CORRECTION_CLASSES).schema()
COMMON_ERRORS = (400, 401, 403, 409, 429, 503)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"$ref": "#/components/responses/Error"} for status in statuses}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "required": list(required), "properties": {**required, **(optional or {})}}


def _operation(
    summary: str, responses: dict, parameters: tuple[v.Param, ...] = (), body: str | None = None
) -> dict:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": [{"$ref": "#/components/parameters/TenantId"}, *(p.openapi() for p in parameters)],
        "security": [{"bearer": []}, {"apiKey": []}],
        "responses": {**responses, **_errors(*COMMON_ERRORS)},
    }
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
        operation["responses"].update(_errors(413))
    return operation


READ_PARAMS = (v.SUBJECT_TYPE, v.SUBJECT_ID, v.REQUESTER_ID, v.REQUESTER_SCOPES)
SYSTEM_STATUS = _object(
    {
        "system_id": STRING,
        "status": {"type": "string", "enum": ["OK", "STALE", "MISSING"]},
        # A version stored in the BC era before the edge refused it reads back as text.
        "enforced_correction_version": {"type": "string", "nullable": True},
        "reported_at": NULLABLE_TIMESTAMP,
    }
)
SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {
            "error": _object(
                {"code": STRING, "message": STRING, "request_id": STRING},
                {"details": {"type": "object"}},
            )
        }
    ),
    "CorrectionRequest": v.CORRECTION_REQUEST.schema(),
    "RevokeRequest": v.REVOKE_REQUEST.schema(),
    "HeartbeatRequest": v.HEARTBEAT_REQUEST.schema(),
    "CorrectionCreated": _object(
        {
            "correction_id": UUID,
            "status": {"type": "string", "enum": ["ACTIVE"]},
            "supersedes": NULLABLE_UUID,
            "created_at": TIMESTAMP,
        }
    ),
    "Revoked": _object(
        {
            "correction_id": UUID,
            "status": {"type": "string", "enum": ["REVOKED"]},
            "revoked_at": TIMESTAMP,
            "reason": STRING,
            "revoked_by": ACTOR_OUT,
            "erased_at": ERASED_AT,
        }
    ),
    "Facts": _object(
        {
            "subject": SUBJECT_OUT,
            "facts": {
                "type": "array",
                "items": _object(
                    {
                        "field_key": STRING,
                        "value": {},
                        "corrected_at": TIMESTAMP,
                        "correction_id": UUID,
                        "actor": ACTOR_OUT,
                    }
                ),
            },
        }
    ),
    "History": _object(
        {
            "subject": SUBJECT_OUT,
            "history": {
                "type": "array",
                "items": _object(
                    {
                        "correction_id": UUID,
                        "field_key": STRING,
                        "value": {},
                        "class": CLASS,
                        "status": {"type": "string", "enum": ["ACTIVE", "SUPERSEDED", "REVOKED"]},
                        "supersedes": NULLABLE_UUID,
                        "created_at": TIMESTAMP,
                        "erased_at": ERASED_AT,
                        "actor": ACTOR_OUT,
                    }
                ),
            },
            "next_cursor": {
                "type": "string",
                "nullable": True,
                "description": "pass as cursor for the next (older) page; null on the last page",
            },
        }
    ),
    "Heartbeat": _object(
        {
            "heartbeat_id": UUID,
            "system_id": STRING,
            "enforced_correction_version": TIMESTAMP,
            "reported_at": TIMESTAMP,
        }
    ),
    "SystemStatus": SYSTEM_STATUS,
    "Status": _object(
        {
            "evaluated_at": TIMESTAMP,
            "heartbeat_interval_seconds": {"type": "integer"},
            "heartbeat_grace_multiplier": {"type": "integer"},
            "systems": {"type": "array", "items": _ref("SystemStatus")},
        }
    ),
    "Escalation": _object(
        {
            "tenant_id": UUID,
            "evaluated_at": TIMESTAMP,
            "escalation": {"type": "string", "enum": ["NONE", "WARN", "CRITICAL"]},
            "summary": _object(
                {name: {"type": "integer"} for name in ("total_systems", "ok", "stale", "missing")}
            ),
            "affected_systems": {"type": "array", "items": _ref("SystemStatus")},
        }
    ),
    "ExpectedSystems": _object(
        {"systems": {"type": "array", "items": _object({"system_id": STRING, "created_at": TIMESTAMP})}}
    ),
    "ExpectedSystem": _object({"system_id": STRING, "expected": {"type": "boolean"}}),
}


@cache
def openapi_document(history_page_max: int) -> dict[str, Any]:
    tenant = v.Param("X-Tenant-Id", UUID, v.check_uuid, True, "the tenant of the call", "header")
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "STET API",
            "version": f"1 (schema {expected_version():03d})",
            "description": "Corrections recorded once, read back filtered by who asks.",
        },
        "components": {
            "schemas": SCHEMAS,
            "parameters": {"TenantId": tenant.openapi()},
            "responses": {"Error": _json(_ref("Error"), "error, see error.code")},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "stet_<key id>_<secret>"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "paths": {
            "/health": {"get": {"summary": "liveness", "responses": {"200": _json({"type": "object"})}}},
            "/ready": {
                "get": {
                    "summary": "readiness: database reachable and migrations current",
                    "responses": {
                        "200": _json({"type": "object"}),
                        "503": _json({"type": "object"}, "not ready"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {"description": "text exposition format", "content": {"text/plain": {}}}
                    },
                }
            },
            "/v1/corrections": {
                "post": _operation(
                    "record a correction",
                    {
                        "201": _json(_ref("CorrectionCreated"), "created"),
                        "200": _json(_ref("CorrectionCreated"), "idempotent replay"),
                    },
                    body="CorrectionRequest",
                )
            },
            "/v1/corrections/{correction_id}/revoke": {
                "post": _operation(
                    "revoke a correction (GDPR erasure): it leaves facts and default history",
                    {"200": _json(_ref("Revoked")), **_errors(404)},
                    (v.CORRECTION_ID,),
                    body="RevokeRequest",
                )
            },
            "/v1/facts": {
                "get": _operation(
                    "ACTIVE facts of a subject the requester may read",
                    {"200": _json(_ref("Facts"))},
                    (*READ_PARAMS, v.FIELD_KEYS),
                )
            },
            "/v1/history": {
                "get": _operation(
                    "corrections of a subject, newest first, one page at a time",
                    {"200": _json(_ref("History"))},
                    (
                        *READ_PARAMS,
                        v.FIELD_KEY,
                        v.INCLUDE_REVOKED,
                        v.history_limit(history_page_max),
                        v.CURSOR,
                    ),
                )
            },
            "/v1/enforcement/heartbeat": {
                "post": _operation(
                    "report that a system enforces corrections up to a version",
                    {"201": _json(_ref("Heartbeat"), "stored")},
                    body="HeartbeatRequest",
                )
            },
            "/v1/enforcement/status": {
                "get": _operation(
                    "latest heartbeat per system: OK, STALE or MISSING",
                    {"200": _json(_ref("Status"))},
                    (v.SYSTEM_FILTER,),
                )
            },
            "/v1/enforcement/escalation": {
                "get": _operation(
                    "escalation level: CRITICAL when a system is MISSING, WARN when STALE",
                    {"200": _json(_ref("Escalation"))},
                    (v.SYSTEM_FILTER,),
                )
            },
            "/v1/enforcement/systems": {
                "get": _operation("systems expected to report", {"200": _json(_ref("ExpectedSystems"))})
            },
            "/v1/enforcement/systems/{system_id}": {
                "put": _operation(
                    "expect a system to report heartbeats",
                    {
                        "201": _json(_ref("ExpectedSystem"), "registered"),
                        "200": _json(_ref("ExpectedSystem"), "known"),
                    },
                    (v.SYSTEM_ID,),
                ),
                "delete": _operation(
                    "stop expecting a system",
                    {"204": {"description": "removed"}, **_errors(404)},
                    (v.SYSTEM_ID,),
                ),
            },
        },
    }
