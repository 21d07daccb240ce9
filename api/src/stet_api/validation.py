"""Validation at the edge: requests are checked here before any SQL runs.

Every rejection is a 400 with the offending field named, never a 500 further in. The
request models below (bodies and parameters) are also what openapi.py publishes.
"""

from __future__ import annotations

import base64
import json
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field as dc_field
from datetime import UTC, datetime
from typing import Any

from stet_api.errors import ApiError, validation_error

MAX_TEXT = 255
MAX_REASON = 2000
MAX_LIST_ITEMS = 1000
MAX_VALUE_DEPTH = 64
MAX_TIMESTAMP = 64
UUID_PATTERN = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
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
    if not isinstance(value, str) or len(value) > MAX_TIMESTAMP:
        raise validation_error(f"{field} must be an ISO 8601 timestamp string", field)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise validation_error(f"{field} must be an ISO 8601 timestamp", field) from None
    if parsed.tzinfo is None:
        raise validation_error(f"{field} must carry a time zone offset (e.g. Z or +00:00)", field)
    try:
        # Years 1..9999 in UTC: 0001-01-01T00:00:00+01:00 would be stored in the BC era.
        # Handed on in UTC: PostgreSQL refuses offsets past 15:59 that Python accepts.
        return parsed.astimezone(UTC)
    except OverflowError:
        raise validation_error(f"{field} must fall between years 1 and 9999 in UTC", field) from None


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


# --- request models: the validators below and the OpenAPI document (openapi.py) both
# come from these, so a limit is written once.


class Field:
    """One value of a request: its JSON schema and the check that enforces it."""

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def check(self, value: Any, field: str) -> Any:
        raise NotImplementedError


@dataclass(frozen=True)
class Text(Field):
    max_length: int = MAX_TEXT

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "maxLength": self.max_length}

    def check(self, value: Any, field: str) -> str:
        return check_text(value, field, self.max_length)


@dataclass(frozen=True)
class TextList(Field):
    max_items: int = MAX_LIST_ITEMS

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": Text().schema(), "maxItems": self.max_items}

    def check(self, value: Any, field: str) -> list[str]:
        if not isinstance(value, list):
            raise validation_error(f"{field} must be a list of strings", field)
        if len(value) > self.max_items:
            raise validation_error(f"{field} must have at most {self.max_items} items", field)
        return [check_text(item, field) for item in value]


@dataclass(frozen=True)
class Flag(Field):
    description: str = ""

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean", "description": self.description}

    def check(self, value: Any, field: str) -> bool:
        if not isinstance(value, bool):
            raise validation_error(f"{field} must be true or false", field)
        return value


@dataclass(frozen=True)
class Choice(Field):
    values: tuple[str, ...]

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}

    def check(self, value: Any, field: str) -> str:
        if value not in self.values:
            raise validation_error(f"{field} must be one of {', '.join(self.values)}", field)
        return value


@dataclass(frozen=True)
class Uuid(Field):
    nullable: bool = False

    def schema(self) -> dict[str, Any]:
        # The pattern too: generators (schemathesis) do not know the uuid format.
        schema = {"type": "string", "format": "uuid", "pattern": UUID_PATTERN}
        return {**schema, "nullable": True} if self.nullable else schema

    def check(self, value: Any, field: str) -> uuid.UUID | None:
        return None if value is None and self.nullable else check_uuid(value, field)


@dataclass(frozen=True)
class Timestamp(Field):
    def schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "date-time", "maxLength": MAX_TIMESTAMP}

    def check(self, value: Any, field: str) -> datetime:
        return check_timestamp(value, field)


@dataclass(frozen=True)
class AnyJson(Field):
    description: str

    def schema(self) -> dict[str, Any]:
        return {"description": self.description}

    def check(self, value: Any, field: str) -> Any:
        return check_json_value(value, field)


@dataclass(frozen=True)
class Obj(Field):
    """A JSON object with known fields only; rule: a check across fields, told in description."""

    required: dict[str, Field]
    optional: dict[str, Field] = dc_field(default_factory=dict)
    description: str = ""
    rule: Callable[[dict[str, Any], str], None] | None = None

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object", "additionalProperties": False}
        if self.required:
            schema["required"] = list(self.required)
        schema["properties"] = {
            name: spec.schema() for name, spec in {**self.required, **self.optional}.items()
        }
        if self.description:
            schema["description"] = self.description
        return schema

    def check(self, value: Any, field: str) -> dict[str, Any]:
        check_object(value, field, set(self.required), frozenset(self.optional))
        prefix = "" if field == "body" else f"{field}."
        checked = {
            name: spec.check(value[name], prefix + name)
            for name, spec in {**self.required, **self.optional}.items()
            if name in value
        }
        if self.rule:
            self.rule(checked, field)
        return checked


def _names_a_reader(permissions: dict[str, Any], field: str) -> None:
    if not (permissions.get("readers") or permissions.get("scopes")):
        raise validation_error("permissions must name at least one reader or scope", field)


ACTOR = Obj({"type": Text(), "id": Text()})
SUBJECT = ACTOR
CORRECTION_REQUEST = Obj(
    {
        "subject": SUBJECT,
        "field_key": Text(),
        "value": AnyJson("any JSON value, returned exactly as submitted"),
        "class": Choice(CORRECTION_CLASSES),
        "permissions": Obj(
            {},
            {"readers": TextList(), "scopes": TextList(), "deny_list": TextList()},
            "must name at least one reader or scope",
            _names_a_reader,
        ),
        "actor": ACTOR,
        "idempotency_key": Text(),
    },
    {"supersedes": Uuid(nullable=True)},
)
REVOKE_REQUEST = Obj(
    {"reason": Text(MAX_REASON), "actor": ACTOR},
    {
        "erase": Flag(
            "true: also scrub the value (it becomes null, in the table and in history); "
            "allowed on an already revoked correction"
        )
    },
)
HEARTBEAT_REQUEST = Obj({"system_id": Text(), "enforced_correction_version": Timestamp()})


def correction_request(body: Any) -> dict[str, Any]:
    fields = CORRECTION_REQUEST.check(body, "body")
    subject = fields.pop("subject")
    return {
        **fields,
        "subject_type": subject["type"],
        "subject_id": subject["id"],
        "supersedes": fields.get("supersedes"),
    }


def revoke_request(body: Any) -> dict[str, Any]:
    return REVOKE_REQUEST.check(body, "body")


def heartbeat_request(body: Any) -> dict[str, Any]:
    return HEARTBEAT_REQUEST.check(body, "body")


# --- parameters: raw strings from the query or the path, parsed the same way.


def csv_list(raw: str, field: str) -> list[str] | None:
    """A comma-separated list; None when empty."""
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if len(items) > MAX_LIST_ITEMS:
        raise validation_error(f"{field} must list at most {MAX_LIST_ITEMS} items", field)
    for item in items:
        check_text(item, field)
    return items or None


def parse_bool(raw: str, field: str) -> bool:
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise validation_error(f"{field} must be true or false", field)


def history_cursor(raw: str, field: str) -> tuple[datetime, uuid.UUID]:
    """The position a history page ends at, as handed out in next_cursor."""
    invalid = validation_error(f"{field} must be a next_cursor from a previous page", field)
    try:
        created_at, _, correction_id = base64.urlsafe_b64decode(raw.encode("ascii")).decode().partition("|")
        position = datetime.fromisoformat(created_at), uuid.UUID(correction_id)
    except (ValueError, UnicodeError):
        raise invalid from None
    if position[0].tzinfo is None:
        raise invalid
    return position


def next_history_cursor(created_at: datetime, correction_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{correction_id}".encode()).decode()


@dataclass(frozen=True)
class Param:
    """A query or path parameter: its OpenAPI entry and the parser of its raw string."""

    name: str
    schema: dict[str, Any]
    parse_raw: Callable[[str, str], Any]
    required: bool = False
    description: str = ""
    location: str = "query"
    default: Any = None

    def openapi(self) -> dict[str, Any]:
        entry = {"name": self.name, "in": self.location, "required": self.required, "schema": self.schema}
        return {**entry, "description": self.description} if self.description else entry

    def parse(self, args: Any) -> Any:
        raw = args.get(self.name)
        if raw is None:
            if self.required:
                raise validation_error(f"query parameter {self.name} is required", self.name)
            return self.default
        return self.parse_raw(raw, self.name)


CSV_SCHEMA = {"type": "string"}
CSV_HELP = f"comma-separated, at most {MAX_LIST_ITEMS} items of 1 to {MAX_TEXT} characters"
SUBJECT_TYPE = Param("subject_type", Text().schema(), check_text, required=True)
SUBJECT_ID = Param("subject_id", Text().schema(), check_text, required=True)
REQUESTER_ID = Param("requester_id", Text().schema(), check_text, required=True)
REQUESTER_SCOPES = Param("requester_scopes", CSV_SCHEMA, csv_list, description=f"scopes, {CSV_HELP}")
FIELD_KEYS = Param("field_keys", CSV_SCHEMA, csv_list, description=f"only these fields, {CSV_HELP}")
FIELD_KEY = Param("field_key", Text().schema(), check_text)
INCLUDE_REVOKED = Param("include_revoked", {"type": "boolean"}, parse_bool, default=False)
CURSOR = Param("cursor", {"type": "string"}, history_cursor, description="next_cursor of the previous page")
SYSTEM_FILTER = Param("system_id", Text().schema(), check_text)
CORRECTION_ID = Param("correction_id", Uuid().schema(), check_uuid, required=True, location="path")
SYSTEM_ID = Param("system_id", Text().schema(), check_text, required=True, location="path")


def history_limit(page_max: int) -> Param:
    """The page size of GET /v1/history, bounded by the server's STET_HISTORY_PAGE_MAX."""

    def parse(raw: str, field: str) -> int:
        if not raw.isdigit() or not 1 <= int(raw) <= page_max:
            raise validation_error(f"{field} must be an integer from 1 to {page_max}", field)
        return int(raw)

    return Param(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": page_max},
        parse,
        description=f"page size, 1 to {page_max} (the default)",
        default=page_max,
    )
