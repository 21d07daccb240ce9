"""Property-based run of the app's own OpenAPI document: no input may yield a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from conftest import make_app
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error


@pytest.fixture(scope="module")
def fuzz_app(db_url):
    app = make_app(db_url, STET_AUTH_REQUIRED="false", STET_RATE_LIMIT_WRITES_PER_MINUTE="0")
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
def test_no_server_errors(case):
    response = case.call()
    case.validate_response(response, checks=(not_a_server_error,))
