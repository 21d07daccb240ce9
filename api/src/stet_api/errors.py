"""The one error body every 4xx/5xx carries (docs/interfaces.md)."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the client is told about, with its HTTP status and stable code.

    `cause` says what failed on the server side (the driver's error, the pool's state): the
    request's access log line carries it, the client's body never does.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        cause: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}
        self.cause = cause


def validation_error(message: str, field: str | None = None) -> ApiError:
    return ApiError(400, "VALIDATION_ERROR", message, {"field": field} if field else None)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


class DatabaseUnavailable(ApiError):
    def __init__(self, cause: str = "") -> None:
        super().__init__(
            503, "DATABASE_UNAVAILABLE", "the database is not reachable; retry shortly", cause=cause
        )


class DatabaseTimeout(ApiError):
    def __init__(self, cause: str = "") -> None:
        super().__init__(
            503, "DATABASE_TIMEOUT", "the database did not answer in time; retry shortly", cause=cause
        )


class TransactionConflict(ApiError):
    """A deadlock or serialization failure: rolled back whole, safe to send again."""

    def __init__(self, message: str = "a concurrent transaction conflicted with this one; retry") -> None:
        super().__init__(409, "CONFLICT", message, {"retryable": True})


def error_body(code: str, message: str, request_id: str, details: dict[str, Any] | None = None) -> dict:
    error: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    if details:
        error["details"] = details
    return {"error": error}
