"""Every SQL statement of the API. Functions take a cursor inside a transaction.

Permission filtering happens in SQL (stet_may_read, migration 009): rows the requester
may not read never leave the database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg2.extras import Json

from stet_api.db import Cursor


def _rows(cursor: Cursor) -> list[dict[str, Any]]:
    names = [column.name for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _first_row(cursor: Cursor) -> dict[str, Any] | None:
    rows = _rows(cursor)
    return rows[0] if rows else None


# --- corrections -------------------------------------------------------------------------


def claim_idempotency_key(
    cursor: Cursor, tenant_id: uuid.UUID, key: str, correction_id: uuid.UUID, payload_hash: str
) -> bool:
    """Reserve the key for this request; False when another request holds it already.

    A concurrent request with the same key waits here until the first one commits.
    """
    cursor.execute(
        "INSERT INTO idempotency (tenant_id, key, correction_id, payload_hash) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (tenant_id, key) DO NOTHING RETURNING 1",
        (tenant_id, key, correction_id, payload_hash),
    )
    return cursor.fetchone() is not None


def idempotent_replay(cursor: Cursor, tenant_id: uuid.UUID, key: str) -> dict[str, Any] | None:
    cursor.execute(
        "SELECT i.payload_hash, c.correction_id, c.supersedes, c.created_at"
        " FROM idempotency i JOIN corrections c"
        "   ON c.correction_id = i.correction_id AND c.tenant_id = i.tenant_id"
        " WHERE i.tenant_id = %s AND i.key = %s",
        (tenant_id, key),
    )
    return _first_row(cursor)


def active_correction_for_update(
    cursor: Cursor, tenant_id: uuid.UUID, correction_id: uuid.UUID
) -> dict | None:
    cursor.execute(
        "SELECT correction_id, subject_type, subject_id, field_key FROM corrections"
        " WHERE tenant_id = %s AND correction_id = %s AND status = 'ACTIVE' FOR UPDATE",
        (tenant_id, correction_id),
    )
    return _first_row(cursor)


def supersede_active(
    cursor: Cursor, tenant_id: uuid.UUID, subject_type: str, subject_id: str, field_key: str
) -> uuid.UUID | None:
    """Mark the field's ACTIVE correction SUPERSEDED; return its id (None when there was none)."""
    cursor.execute(
        "UPDATE corrections SET status = 'SUPERSEDED'"
        " WHERE tenant_id = %s AND subject_type = %s AND subject_id = %s AND field_key = %s"
        "   AND status = 'ACTIVE' RETURNING correction_id",
        (tenant_id, subject_type, subject_id, field_key),
    )
    row = cursor.fetchone()
    return row[0] if row else None


def insert_correction(cursor: Cursor, row: dict[str, Any]) -> datetime:
    cursor.execute(
        "INSERT INTO corrections (correction_id, tenant_id, subject_type, subject_id, field_key, value,"
        " class, status, supersedes, permissions, actor_type, actor_id, idempotency_key, origin)"
        " VALUES (%(correction_id)s, %(tenant_id)s, %(subject_type)s, %(subject_id)s, %(field_key)s,"
        " %(value)s, %(class)s, 'ACTIVE', %(supersedes)s, %(permissions)s, %(actor_type)s, %(actor_id)s,"
        " %(idempotency_key)s, %(origin)s) RETURNING created_at",
        {
            **row,
            "value": Json(row["value"]),
            "permissions": Json(row["permissions"]),
            "origin": Json(row["origin"]),
        },
    )
    return cursor.fetchone()[0]


def revoke_correction(
    cursor: Cursor, tenant_id: uuid.UUID, correction_id: uuid.UUID, reason: str, actor: dict[str, str]
) -> dict[str, Any] | None:
    """Revoke an ACTIVE or SUPERSEDED correction; None when it does not exist in this tenant."""
    cursor.execute(
        "UPDATE corrections SET status = 'REVOKED', revoked_at = now(), revoked_reason = %s,"
        " revoked_by_type = %s, revoked_by_id = %s"
        " WHERE tenant_id = %s AND correction_id = %s AND status <> 'REVOKED'"
        " RETURNING correction_id, status, revoked_at, revoked_reason AS reason,"
        "   json_build_object('type', revoked_by_type, 'id', revoked_by_id) AS revoked_by, erased_at",
        (reason, actor["type"], actor["id"], tenant_id, correction_id),
    )
    return _first_row(cursor)


def revoked_correction(cursor: Cursor, tenant_id: uuid.UUID, correction_id: uuid.UUID) -> dict | None:
    cursor.execute(
        "SELECT correction_id, status, revoked_at, revoked_reason AS reason,"
        "   json_build_object('type', revoked_by_type, 'id', revoked_by_id) AS revoked_by, erased_at"
        " FROM corrections WHERE tenant_id = %s AND correction_id = %s AND status = 'REVOKED'",
        (tenant_id, correction_id),
    )
    return _first_row(cursor)


def erase_revoked_value(cursor: Cursor, tenant_id: uuid.UUID, correction_id: uuid.UUID) -> None:
    """Scrub a revoked correction's value, and the hash of its request body (a low-entropy
    value could be found again by hashing guesses). A retry of that request then gets 409."""
    cursor.execute(
        "UPDATE corrections SET value = 'null'::jsonb, erased_at = COALESCE(erased_at, now())"
        " WHERE tenant_id = %s AND correction_id = %s AND status = 'REVOKED'"
        " RETURNING idempotency_key",
        (tenant_id, correction_id),
    )
    row = cursor.fetchone()
    if row is not None:
        cursor.execute(
            "UPDATE idempotency SET payload_hash = 'erased'"
            " WHERE tenant_id = %s AND key = %s AND correction_id = %s",
            (tenant_id, row[0], correction_id),
        )


@dataclass(frozen=True)
class ReadScope:
    """Whose data is read and who is asking: the inputs of the permission rule.

    Passed to SQL as vars(scope): dataclasses.asdict deep-copies, measurable on the hottest path.
    """

    tenant_id: uuid.UUID
    subject_type: str
    subject_id: str
    requester_id: str
    requester_scopes: list[str]


def permitted_facts_json(cursor: Cursor, scope: ReadScope, field_keys: list[str] | None) -> str:
    """The whole GET /v1/facts body, built by PostgreSQL (stet_permitted_facts_json, migration
    012, a function so that its plan is kept per server connection): no row reaches Python."""
    cursor.execute(
        "SELECT stet_permitted_facts_json(%(tenant_id)s, %(subject_type)s, %(subject_id)s,"
        " %(requester_id)s, %(requester_scopes)s::text[], %(field_keys)s::text[])",
        {**vars(scope), "field_keys": field_keys},
    )
    return cursor.fetchone()[0]


def permitted_history(
    cursor: Cursor,
    scope: ReadScope,
    field_key: str | None,
    include_revoked: bool,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """One page, newest first; after: the (created_at, correction_id) of the previous page's last row."""
    cursor.execute(
        "SELECT correction_id, field_key, value, class, status, supersedes, created_at, erased_at, "
        "json_build_object('type', actor_type, 'id', actor_id) AS actor FROM corrections"
        " WHERE tenant_id = %(tenant_id)s AND subject_type = %(subject_type)s"
        "   AND subject_id = %(subject_id)s"
        "   AND (%(include_revoked)s OR status <> 'REVOKED')"
        "   AND (%(field_key)s::text IS NULL OR field_key = %(field_key)s)"
        "   AND (%(after_at)s::timestamptz IS NULL OR created_at < %(after_at)s"
        "        OR (created_at = %(after_at)s AND correction_id > %(after_id)s))"
        "   AND stet_may_read(permissions, %(requester_id)s, %(requester_scopes)s::text[])"
        " ORDER BY created_at DESC, correction_id LIMIT %(limit)s",
        {
            **vars(scope),
            "field_key": field_key,
            "include_revoked": include_revoked,
            "after_at": after[0] if after else None,
            "after_id": after[1] if after else None,
            "limit": limit,
        },
    )
    return _rows(cursor)


# --- enforcement -------------------------------------------------------------------------


def insert_heartbeat(
    cursor: Cursor, tenant_id: uuid.UUID, system_id: str, enforced_version: datetime, origin: dict
) -> dict[str, Any]:
    cursor.execute(
        "INSERT INTO enforcement_heartbeats (heartbeat_id, tenant_id, system_id,"
        " enforced_correction_version, origin) VALUES (%s, %s, %s, %s, %s)"
        " RETURNING heartbeat_id, system_id, enforced_correction_version, reported_at",
        (uuid.uuid4(), tenant_id, system_id, enforced_version, Json(origin)),
    )
    return _first_row(cursor)


def system_heartbeats(cursor: Cursor, tenant_id: uuid.UUID, system_id: str | None) -> list[dict[str, Any]]:
    """Latest heartbeat per system, plus expected systems that never reported (NULL columns).

    Without a filter, the tenant's systems are walked through idx_heartbeats_latest one
    system at a time (a recursive "loose index scan"); each one's newest heartbeat is read
    with LIMIT 1: the cost grows with the number of systems, not with the heartbeats kept.
    """
    cursor.execute(
        "WITH RECURSIVE walk AS ("
        "  SELECT min(system_id) AS system_id FROM enforcement_heartbeats"
        "  WHERE tenant_id = %(tenant_id)s AND %(system_id)s::text IS NULL"
        "  UNION ALL"
        "  SELECT (SELECT min(h.system_id) FROM enforcement_heartbeats h"
        "          WHERE h.tenant_id = %(tenant_id)s AND h.system_id > w.system_id)"
        "  FROM walk w WHERE w.system_id IS NOT NULL),"
        " systems AS (SELECT system_id FROM walk UNION ALL SELECT %(system_id)s::text),"
        " latest AS ("
        "  SELECT l.* FROM systems s CROSS JOIN LATERAL ("
        "    SELECT h.system_id, h.enforced_correction_version, h.reported_at FROM enforcement_heartbeats h"
        "    WHERE h.tenant_id = %(tenant_id)s AND h.system_id = s.system_id"
        "    ORDER BY h.reported_at DESC LIMIT 1) l),"
        " wanted AS ("
        "  SELECT system_id FROM enforcement_expected_systems WHERE tenant_id = %(tenant_id)s"
        "    AND (%(system_id)s::text IS NULL OR system_id = %(system_id)s)"
        "  UNION SELECT %(system_id)s::text WHERE %(system_id)s::text IS NOT NULL)"
        " SELECT COALESCE(l.system_id, w.system_id) AS system_id, l.enforced_correction_version,"
        "        l.reported_at, now() AS evaluated_at"
        " FROM latest l FULL JOIN wanted w ON w.system_id = l.system_id ORDER BY 1",
        {"tenant_id": tenant_id, "system_id": system_id},
    )
    return _rows(cursor)


def database_now(cursor: Cursor) -> datetime:
    cursor.execute("SELECT now()")
    return cursor.fetchone()[0]


def add_expected_system(cursor: Cursor, tenant_id: uuid.UUID, system_id: str) -> bool:
    """True when the system was added, False when it was registered already."""
    cursor.execute(
        "INSERT INTO enforcement_expected_systems (tenant_id, system_id) VALUES (%s, %s)"
        " ON CONFLICT DO NOTHING RETURNING 1",
        (tenant_id, system_id),
    )
    return cursor.fetchone() is not None


def remove_expected_system(cursor: Cursor, tenant_id: uuid.UUID, system_id: str) -> bool:
    cursor.execute(
        "DELETE FROM enforcement_expected_systems WHERE tenant_id = %s AND system_id = %s RETURNING 1",
        (tenant_id, system_id),
    )
    return cursor.fetchone() is not None


def expected_systems(cursor: Cursor, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    cursor.execute(
        "SELECT system_id, created_at FROM enforcement_expected_systems"
        " WHERE tenant_id = %s ORDER BY system_id",
        (tenant_id,),
    )
    return _rows(cursor)


# --- access control and operations -------------------------------------------------------


def api_key(cursor: Cursor, key_id: uuid.UUID) -> dict[str, Any] | None:
    cursor.execute(
        "SELECT tenant_id, secret_hash, scopes FROM api_keys WHERE key_id = %s AND revoked_at IS NULL",
        (key_id,),
    )
    return _first_row(cursor)


def count_hits(cursor: Cursor, client: str, window_seconds: int, hits: int = 1) -> tuple[int, datetime, int]:
    """Add hits for client to the current fixed window.

    Returns (hits so far, window end, whole seconds until it ends), all on the database
    clock. One upsert shared by every worker and host keeps the count exact.
    """
    cursor.execute(
        "WITH hit AS ("
        "  INSERT INTO rate_limit_windows AS w (client_key, window_start, hits)"
        "  VALUES (%(client)s,"
        "    to_timestamp(floor(extract(epoch FROM now()) / %(window)s) * %(window)s), %(hits)s)"
        "  ON CONFLICT (client_key, window_start) DO UPDATE SET hits = w.hits + excluded.hits"
        "  RETURNING hits, window_start + make_interval(secs => %(window)s) AS window_end)"
        " SELECT hits, window_end, ceil(extract(epoch FROM window_end - now()))::int FROM hit",
        {"client": client, "window": window_seconds, "hits": hits},
    )
    total, window_end, seconds_left = cursor.fetchone()
    if total == hits:
        # First hits of a new window: clear finished windows so the table stays small.
        cursor.execute(
            "DELETE FROM rate_limit_windows WHERE window_start < %s - make_interval(secs => %s)",
            (window_end, 2 * window_seconds),
        )
    return total, window_end, seconds_left


def applied_migration_version(cursor: Cursor) -> int | None:
    cursor.execute("SELECT to_regclass('public.schema_migrations') IS NOT NULL")
    if not cursor.fetchone()[0]:
        return None
    cursor.execute("SELECT max(version) FROM public.schema_migrations")
    return cursor.fetchone()[0]


def migrations_after(cursor: Cursor, version: int) -> list[tuple[int, str, bool]]:
    """Applied migrations newer than `version`: (version, name, whether older code runs on it).
    A migration with no schema_window row (none before 010) counts as one older code cannot run on."""
    cursor.execute("SELECT to_regclass('public.schema_window') IS NOT NULL")
    window = "COALESCE(w.older_code_runs, false)" if cursor.fetchone()[0] else "false"
    join = "LEFT JOIN public.schema_window w ON w.migration = m.version" if window != "false" else ""
    cursor.execute(
        f"SELECT m.version, m.name, {window} FROM public.schema_migrations m {join}"  # noqa: S608 - constants only
        " WHERE m.version > %s ORDER BY m.version",
        (version,),
    )
    return [(number, name, runs) for number, name, runs in cursor.fetchall()]
