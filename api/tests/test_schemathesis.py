"""Property-based run of the app's own OpenAPI document.

No input may yield a 5xx, and every answer must be one the document promises: a status it
lists, its content type, a body valid against its response schema. (schemathesis's
negative_data_rejection is left out: with auth off here, keys are ignored by design, and
unknown query parameters are ignored rather than refused.)
"""

from __future__ import annotations

import pytest
import schemathesis
from conftest import make_app
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)


@pytest.fixture(scope="module")
def fuzz_app(db_url):
    app = make_app(
        db_url,
        STET_AUTH_REQUIRED="false",
        STET_UNAUTHENTICATED_NETWORKS="127.0.0.0/8",
        STET_RATE_LIMIT_WRITES_PER_MINUTE="0",
        STET_RATE_LIMIT_READS_PER_MINUTE="0",
        STET_RATE_LIMIT_HEARTBEATS_PER_MINUTE="0",
    )
    yield app
    app.extensions["stet_pool"].close()


schema = schemathesis.from_pytest_fixture("fuzz_schema")


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app):
    # Valid and deliberately invalid requests, both generated from the served document.
    return schemathesis.from_wsgi(
        "/openapi.json", fuzz_app, data_generation_methods=schemathesis.DataGenerationMethod.all()
    )


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_answers_conform_to_the_document(case):
    response = case.call()
    case.validate_response(response, checks=CHECKS)
