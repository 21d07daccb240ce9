"""Concurrent writers: the database keeps exactly one ACTIVE row; losers get 409."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from helpers import connect, correction

WRITERS = 8


def _race(app, bodies, tenant):
    """Release all writers at once from a barrier; return their responses."""
    barrier = threading.Barrier(len(bodies))

    def write(body):
        client = app.test_client()
        barrier.wait()
        return client.post("/v1/corrections", json=body, headers={"X-Tenant-Id": tenant})

    with ThreadPoolExecutor(max_workers=len(bodies)) as executor:
        return list(executor.map(write, bodies))


def _statuses_by_field(db_url, tenant):
    with connect(db_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            "SELECT status, count(*) FROM corrections WHERE tenant_id = %s GROUP BY status", (tenant,)
        )
        return dict(cursor.fetchall())


def test_concurrent_writers_to_one_field_leave_exactly_one_active_row(legacy_app, db_url):
    for _ in range(5):  # several rounds: each is a fresh race
        tenant = str(uuid.uuid4())
        responses = _race(legacy_app, [correction(value=i) for i in range(WRITERS)], tenant)
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {201, 409}, statuses
        assert 201 in statuses
        for response in responses:
            if response.status_code == 409:
                assert response.get_json()["error"]["code"] == "CONFLICT"
        counts = _statuses_by_field(db_url, tenant)
        assert counts["ACTIVE"] == 1
        assert counts.get("SUPERSEDED", 0) == statuses.count(201) - 1


def test_concurrent_retries_of_one_idempotency_key_create_one_correction(legacy_app, db_url):
    tenant = str(uuid.uuid4())
    body = correction()
    responses = _race(legacy_app, [body] * WRITERS, tenant)
    assert sorted({r.status_code for r in responses}) in ([200, 201], [201])
    assert [r.status_code for r in responses].count(201) == 1
    assert len({r.get_json()["correction_id"] for r in responses}) == 1
    assert _statuses_by_field(db_url, tenant) == {"ACTIVE": 1}
