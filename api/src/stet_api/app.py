"""The Flask app factory: configuration, pool, blueprints, error bodies, access log."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from typing import Any

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from stet_api.auth import KeyCache
from stet_api.config import Settings
from stet_api.db import ConnectionPool
from stet_api.errors import ApiError, error_body
from stet_api.jsonutil import IsoJSONProvider
from stet_api.metrics import Metrics
from stet_api.ratelimit import SyncedCounter, client_address
from stet_api.routes import corrections, enforcement, ops, reads, systems

ACCESS_LOGGER = "stet_api.access"
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def create_app(config: Settings | dict[str, str] | None = None) -> Flask:
    """Build the app. config: Settings, an environment-style mapping, or None (os.environ)."""
    settings = config if isinstance(config, Settings) else Settings.from_env(config)
    app = Flask(__name__)
    app.json = IsoJSONProvider(app)
    app.config["STET"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.extensions["stet_pool"] = ConnectionPool(settings)
    app.extensions["stet_keys"] = KeyCache(
        settings.auth_cache_seconds, settings.auth_unknown_key_lookups_per_second
    )
    app.extensions["stet_metrics"] = Metrics()
    app.extensions["stet_read_counter"] = SyncedCounter()
    for blueprint in (corrections.bp, reads.bp, enforcement.bp, systems.bp, ops.bp):
        app.register_blueprint(blueprint)
    _install_request_hooks(app, settings)
    _install_error_handlers(app)
    _configure_access_log()
    if not settings.auth_required:
        _warn_auth_off(settings)
    return app


def _warn_auth_off(settings: Settings) -> None:
    networks = ", ".join(str(network) for network in settings.unauthenticated_networks)
    logging.getLogger("stet_api").warning(
        "STET_AUTH_REQUIRED=false: requests without an API key from %s are trusted on their"
        " X-Tenant-Id alone, for every tenant; every other client still needs a key",
        networks,
    )


def _install_request_hooks(app: Flask, settings: Settings) -> None:
    @app.before_request
    def start_request() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        g.started = time.perf_counter()

    @app.after_request
    def finish_request(response: Any) -> Any:
        elapsed = time.perf_counter() - g.started
        response.headers["X-Request-Id"] = g.request_id
        response.headers.update(g.get("rate_limit_headers", {}))
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics: Metrics = app.extensions["stet_metrics"]
        metrics.request_duration.labels(endpoint, request.method).observe(elapsed)
        if endpoint == "/v1/corrections" and request.method == "POST":
            metrics.correction_requests.labels(str(response.status_code)).inc()
        elif endpoint == "/v1/facts":
            metrics.fact_requests.labels(str(response.status_code)).inc()
        if settings.access_log:
            _log_access(response.status_code, elapsed)
        return response


def _log_access(status: int, elapsed: float) -> None:
    logger = logging.getLogger(ACCESS_LOGGER)
    if not logger.isEnabledFor(logging.INFO):
        return
    entry = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "request_id": g.request_id,
        "method": request.method,
        "path": request.path,
        "status": status,
        "duration_ms": round(elapsed * 1000, 2),
        "remote_addr": request.remote_addr,
        # The client behind the trusted proxies (nginx), as the rate limits and auth see it.
        "client": client_address(),
        "tenant_id": request.headers.get("X-Tenant-Id"),
    }
    if g.get("error_cause"):
        entry["error"] = g.error_cause
    logger.info(json.dumps(entry))


def _configure_access_log() -> None:
    """One JSON line per request on stderr (journald under systemd), once per process."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _install_error_handlers(app: Flask) -> None:
    def respond(
        status: int, code: str, message: str, details: dict | None = None, headers: dict | None = None
    ):
        response = jsonify(error_body(code, message, g.get("request_id", "-"), details))
        response.status_code = status
        response.headers.update(headers or {})
        return response

    @app.errorhandler(ApiError)
    def api_error(error: ApiError):
        g.error_cause = error.cause
        return respond(error.status, error.code, error.message, error.details, error.headers)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        status = error.code or 500
        headers = dict(error.get_headers())
        headers.pop("Content-Type", None)
        return respond(
            status, _HTTP_CODES.get(status, "HTTP_ERROR"), error.description or error.name, None, headers
        )

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception):
        app.logger.exception("unhandled error (request %s)", g.get("request_id", "-"))
        return respond(500, "INTERNAL_ERROR", "the server failed to handle this request")
