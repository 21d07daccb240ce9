"""The OpenAPI 3.0 document the app serves at /openapi.json (and schemathesis tests against)."""

from __future__ import annotations

from functools import cache
from typing import Any

from stet_api.migrations_bundle import expected_version

TEXT = {"type": "string", "minLength": 1, "maxLength": 255}
UUID = {"type": "string", "format": "uuid"}
TIMESTAMP = {"type": "string", "format": "date-time"}
ACTOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type", "id"],
    "properties": {"type": TEXT, "id": TEXT},
}
SUBJECT = ACTOR
TEXT_LIST = {"type": "array", "items": TEXT, "maxItems": 1000}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"$ref": "#/components/responses/Error"} for status in statuses}


def _param(
    name: str, location: str, required: bool, schema: dict | None = None, description: str = ""
) -> dict:
    return {
        "name": name,
        "in": location,
        "required": required,
        "schema": schema or TEXT,
        "description": description,
    }


TENANT = {"$ref": "#/components/parameters/TenantId"}
SECURITY = [{"bearer": []}, {"apiKey": []}]
COMMON_ERRORS = (400, 401, 403, 503)


def _operation(
    summary: str, responses: dict, parameters: list | None = None, body: str | None = None
) -> dict:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": [TENANT, *(parameters or [])],
        "security": SECURITY,
        "responses": {**responses, **_errors(*COMMON_ERRORS)},
    }
    if body:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(body)}}}
        operation["responses"].update(_errors(413))
    return operation


def _read_params(*extra: dict) -> list[dict]:
    return [
        _param("subject_type", "query", True),
        _param("subject_id", "query", True),
        _param("requester_id", "query", True),
        _param("requester_scopes", "query", False, {"type": "string"}, "comma-separated scopes"),
        *extra,
    ]


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "request_id"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "request_id": {"type": "string"},
                    "details": {"type": "object"},
                },
            }
        },
    },
    "CorrectionRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["subject", "field_key", "value", "class", "permissions", "actor", "idempotency_key"],
        "properties": {
            "subject": SUBJECT,
            "field_key": TEXT,
            "value": {"description": "any JSON value, returned exactly as submitted"},
            "class": {"type": "string", "enum": ["FACT", "DISCARDABLE"]},
            "permissions": {
                "type": "object",
                "additionalProperties": False,
                "description": "must name at least one reader or scope",
                "properties": {"readers": TEXT_LIST, "scopes": TEXT_LIST, "deny_list": TEXT_LIST},
            },
            "actor": ACTOR,
            "idempotency_key": TEXT,
            "supersedes": {**UUID, "nullable": True},
        },
    },
    "CorrectionCreated": {
        "type": "object",
        "required": ["correction_id", "status", "supersedes", "created_at"],
        "properties": {
            "correction_id": UUID,
            "status": {"type": "string", "enum": ["ACTIVE"]},
            "supersedes": {**UUID, "nullable": True},
            "created_at": TIMESTAMP,
        },
    },
    "RevokeRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["reason", "actor"],
        "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 2000}, "actor": ACTOR},
    },
    "Revoked": {
        "type": "object",
        "required": ["correction_id", "status", "revoked_at", "reason", "revoked_by"],
        "properties": {
            "correction_id": UUID,
            "status": {"type": "string", "enum": ["REVOKED"]},
            "revoked_at": TIMESTAMP,
            "reason": {"type": "string"},
            "revoked_by": ACTOR,
        },
    },
    "Facts": {
        "type": "object",
        "required": ["subject", "facts"],
        "properties": {
            "subject": SUBJECT,
            "facts": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["field_key", "value", "corrected_at", "correction_id", "actor"],
                    "properties": {
                        "field_key": {"type": "string"},
                        "value": {},
                        "corrected_at": TIMESTAMP,
                        "correction_id": UUID,
                        "actor": ACTOR,
                    },
                },
            },
        },
    },
    "History": {
        "type": "object",
        "required": ["subject", "history", "next_cursor"],
        "properties": {
            "subject": SUBJECT,
            "next_cursor": {
                "type": "string",
                "nullable": True,
                "description": "pass as cursor for the next (older) page; null on the last page",
            },
            "history": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [
                        "correction_id",
                        "field_key",
                        "value",
                        "class",
                        "status",
                        "supersedes",
                        "actor",
                    ],
                    "properties": {
                        "correction_id": UUID,
                        "field_key": {"type": "string"},
                        "value": {},
                        "class": {"type": "string", "enum": ["FACT", "DISCARDABLE"]},
                        "status": {"type": "string", "enum": ["ACTIVE", "SUPERSEDED", "REVOKED"]},
                        "supersedes": {**UUID, "nullable": True},
                        "created_at": TIMESTAMP,
                        "actor": ACTOR,
                    },
                },
            },
        },
    },
    "HeartbeatRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["system_id", "enforced_correction_version"],
        "properties": {"system_id": TEXT, "enforced_correction_version": TIMESTAMP},
    },
    "SystemStatus": {
        "type": "object",
        "required": ["system_id", "status", "enforced_correction_version", "reported_at"],
        "properties": {
            "system_id": {"type": "string"},
            "status": {"type": "string", "enum": ["OK", "STALE", "MISSING"]},
            "enforced_correction_version": {**TIMESTAMP, "nullable": True},
            "reported_at": {**TIMESTAMP, "nullable": True},
        },
    },
}


@cache
def openapi_document(history_page_max: int) -> dict[str, Any]:
    system_filter = _param("system_id", "query", False)
    system_path = _param("system_id", "path", True)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "STET API",
            "version": f"1 (schema {expected_version():03d})",
            "description": "Corrections recorded once, read back filtered by who asks.",
        },
        "components": {
            "schemas": SCHEMAS,
            "parameters": {"TenantId": _param("X-Tenant-Id", "header", True, UUID, "the tenant of the call")},
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
                        **_errors(409, 429),
                    },
                    body="CorrectionRequest",
                )
            },
            "/v1/corrections/{correction_id}/revoke": {
                "post": _operation(
                    "revoke a correction (GDPR erasure): it leaves facts and default history",
                    {"200": _json(_ref("Revoked")), **_errors(404)},
                    [_param("correction_id", "path", True, UUID)],
                    body="RevokeRequest",
                )
            },
            "/v1/facts": {
                "get": _operation(
                    "ACTIVE facts of a subject the requester may read",
                    {"200": _json(_ref("Facts"))},
                    _read_params(_param("field_keys", "query", False, {"type": "string"}, "comma-separated")),
                )
            },
            "/v1/history": {
                "get": _operation(
                    "corrections of a subject, newest first, one page at a time",
                    {"200": _json(_ref("History"))},
                    _read_params(
                        _param("field_key", "query", False),
                        _param("include_revoked", "query", False, {"type": "boolean"}),
                        _param(
                            "limit",
                            "query",
                            False,
                            {"type": "integer", "minimum": 1, "maximum": history_page_max},
                            "page size (default and largest: the server's STET_HISTORY_PAGE_MAX)",
                        ),
                        _param(
                            "cursor", "query", False, {"type": "string"}, "next_cursor of the previous page"
                        ),
                    ),
                )
            },
            "/v1/enforcement/heartbeat": {
                "post": _operation(
                    "report that a system enforces corrections up to a version",
                    {"201": _json({"type": "object"}, "stored")},
                    body="HeartbeatRequest",
                )
            },
            "/v1/enforcement/status": {
                "get": _operation(
                    "latest heartbeat per system: OK, STALE or MISSING",
                    {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"systems": {"type": "array", "items": _ref("SystemStatus")}},
                            }
                        )
                    },
                    [system_filter],
                )
            },
            "/v1/enforcement/escalation": {
                "get": _operation(
                    "escalation level: CRITICAL when a system is MISSING, WARN when STALE",
                    {
                        "200": _json(
                            {"type": "object", "required": ["escalation", "summary", "affected_systems"]}
                        )
                    },
                    [system_filter],
                )
            },
            "/v1/enforcement/systems": {
                "get": _operation("systems expected to report", {"200": _json({"type": "object"})})
            },
            "/v1/enforcement/systems/{system_id}": {
                "put": _operation(
                    "expect a system to report heartbeats",
                    {
                        "201": _json({"type": "object"}, "registered"),
                        "200": _json({"type": "object"}, "known"),
                    },
                    [system_path],
                ),
                "delete": _operation(
                    "stop expecting a system",
                    {"204": {"description": "removed"}, **_errors(404)},
                    [system_path],
                ),
            },
        },
    }
