"""Small helpers shared by the blueprints."""

from __future__ import annotations

from typing import Any

from flask import current_app, request

from stet_api.config import Settings
from stet_api.db import ConnectionPool
from stet_api.metrics import Metrics
from stet_api.validation import parse_json_body


def pool() -> ConnectionPool:
    return current_app.extensions["stet_pool"]


def settings() -> Settings:
    return current_app.config["STET"]


def metrics() -> Metrics:
    return current_app.extensions["stet_metrics"]


def json_body() -> Any:
    return parse_json_body(request.get_data(cache=False))


def origin() -> dict[str, str]:
    """Who wrote a row: recorded on corrections and heartbeats for forensic attribution."""
    return {"service": "stet-api", "version": settings().version, "environment": settings().environment}
