"""Validation at the edge: requests are checked here before any SQL runs.

Every rejection is a 400 with the offending field named, never a 500 further in.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

from stet_api.errors import ApiError, validation_error

MAX_TEXT = 255
MAX_REASON = 2000
MAX_LIST_ITEMS = 1000
MAX_VALUE_DEPTH = 64
CORRECTION_CLASSES = ("FACT", "DISCARDABLE")


def parse_json_body(raw: bytes) -> Any:
    """Parse a request body strictly: UTF-8, no NaN/Infinity, bounded nesting."""

    def reject_constant(name: str) -> None:
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, "INVALID_JSON", f"request body is not valid JSON: {exc}") from None


def check_text(value: Any, field: str, max_length: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise validation_error(f"{field} must be a string", field)
    if not value.strip():
        raise validation_error(f"{field} must not be empty", field)
    if len(value) > max_length:
        raise validation_error(f"{field} must be at most {max_length} characters", field)
    _check_storable(value, field)
    return value


def _check_storable(text: str, field: str) -> None:
    """PostgreSQL text and jsonb cannot hold NUL, and UTF-8 cannot hold lone surrogates."""
    if "\x00" in text:
        raise validation_error(f"{field} must not contain NUL characters", field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise validation_error(f"{field} contains an invalid Unicode surrogate", field) from None


def check_object(value: Any, field: str, required: set[str], optional: frozenset[str] = frozenset()) -> dict:
    if not isinstance(value, dict):
        raise validation_error(f"{field} must be a JSON object", field)
    unknown = sorted(set(value) - required - optional)
    if unknown:
        raise validation_error(f"{field} has unknown fields: {', '.join(unknown)}", field)
    missing = sorted(required - set(value))
    if missing:
        raise validation_error(f"{field} is missing required fields: {', '.join(missing)}", field)
    return value


def check_uuid(value: Any, field: str) -> uuid.UUID:
    if not isinstance(value, str):
        raise validation_error(f"{field} must be a UUID string", field)
    try:
        return uuid.UUID(value)
    except ValueError:
        raise validation_error(f"{field} must be a UUID", field) from None


def check_timestamp(value: Any, field: str) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise validation_error(f"{field} must be an ISO 8601 timestamp string", field)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise validation_error(f"{field} must be an ISO 8601 timestamp", field) from None
    if parsed.tzinfo is None:
        raise validation_error(f"{field} must carry a time zone offset (e.g. Z or +00:00)", field)
    try:
        # Years 1..9999 in UTC: 0001-01-01T00:00:00+01:00 would be stored in the BC era.
        parsed.astimezone(UTC)
    except OverflowError:
        raise validation_error(f"{field} must fall between years 1 and 9999 in UTC", field) from None
    return parsed


def check_json_value(value: Any, field: str, depth: int = 0) -> Any:
    if depth > MAX_VALUE_DEPTH:
        raise validation_error(f"{field} is nested deeper than {MAX_VALUE_DEPTH} levels", field)
    if isinstance(value, str):
        _check_storable(value, field)
    elif isinstance(value, float) and not math.isfinite(value):
        raise validation_error(f"{field} holds a number too large to represent", field)
    elif isinstance(value, list):
        for item in value:
            check_json_value(item, field, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_storable(key, field)
            check_json_value(item, field, depth + 1)
    return value


def _text_list(value: Any, field: str) -> list[str]:
    if not isinstance(value, list):
        raise validation_error(f"{field} must be a list of strings", field)
    if len(value) > MAX_LIST_ITEMS:
        raise validation_error(f"{field} must have at most {MAX_LIST_ITEMS} items", field)
    return [check_text(item, field) for item in value]


def _actor(value: Any, field: str = "actor") -> dict[str, str]:
    check_object(value, field, {"type", "id"})
    return {"type": check_text(value["type"], f"{field}.type"), "id": check_text(value["id"], f"{field}.id")}


def correction_request(body: Any) -> dict[str, Any]:
    required = {"subject", "field_key", "value", "class", "permissions", "actor", "idempotency_key"}
    check_object(body, "body", required, frozenset({"supersedes"}))
    subject = check_object(body["subject"], "subject", {"type", "id"})
    permissions = check_object(
        body["permissions"], "permissions", set(), frozenset({"readers", "scopes", "deny_list"})
    )
    checked_permissions = {
        name: _text_list(items, f"permissions.{name}") for name, items in permissions.items()
    }
    if not (checked_permissions.get("readers") or checked_permissions.get("scopes")):
        raise validation_error("permissions must name at least one reader or scope", "permissions")
    if body["class"] not in CORRECTION_CLASSES:
        raise validation_error(f"class must be one of {', '.join(CORRECTION_CLASSES)}", "class")
    supersedes = body.get("supersedes")
    return {
        "subject_type": check_text(subject["type"], "subject.type"),
        "subject_id": check_text(subject["id"], "subject.id"),
        "field_key": check_text(body["field_key"], "field_key"),
        "value": check_json_value(body["value"], "value"),
        "class": body["class"],
        "permissions": checked_permissions,
        "actor": _actor(body["actor"]),
        "idempotency_key": check_text(body["idempotency_key"], "idempotency_key"),
        "supersedes": None if supersedes is None else check_uuid(supersedes, "supersedes"),
    }


def revoke_request(body: Any) -> dict[str, Any]:
    check_object(body, "body", {"reason", "actor"})
    return {"reason": check_text(body["reason"], "reason", MAX_REASON), "actor": _actor(body["actor"])}


def heartbeat_request(body: Any) -> dict[str, Any]:
    check_object(body, "body", {"system_id", "enforced_correction_version"})
    return {
        "system_id": check_text(body["system_id"], "system_id"),
        "enforced_correction_version": check_timestamp(
            body["enforced_correction_version"], "enforced_correction_version"
        ),
    }


def csv_list(raw: str | None, field: str) -> list[str] | None:
    """A comma-separated query parameter; None when absent or empty."""
    if raw is None:
        return None
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if len(items) > MAX_LIST_ITEMS:
        raise validation_error(f"{field} must list at most {MAX_LIST_ITEMS} items", field)
    for item in items:
        check_text(item, field)
    return items or None


def query_text(args: Any, name: str, required: bool = True) -> str | None:
    value = args.get(name)
    if value is None:
        if required:
            raise validation_error(f"query parameter {name} is required", name)
        return None
    return check_text(value, name)


def query_int(args: Any, name: str, minimum: int, maximum: int, default: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise validation_error(f"{name} must be an integer from {minimum} to {maximum}", name)
    return int(raw)


def history_cursor(raw: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The position a history page ends at, as handed out in next_cursor."""
    if raw is None:
        return None
    try:
        created_at, _, correction_id = base64.urlsafe_b64decode(raw.encode("ascii")).decode().partition("|")
        position = datetime.fromisoformat(created_at), uuid.UUID(correction_id)
    except (ValueError, UnicodeError):
        raise validation_error("cursor must be a next_cursor from a previous page", "cursor") from None
    if position[0].tzinfo is None:
        raise validation_error("cursor must be a next_cursor from a previous page", "cursor")
    return position


def next_history_cursor(created_at: datetime, correction_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{correction_id}".encode()).decode()


def query_bool(args: Any, name: str) -> bool:
    raw = args.get(name)
    if raw is None:
        return False
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise validation_error(f"{name} must be true or false", name)
