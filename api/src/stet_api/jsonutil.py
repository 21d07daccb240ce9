"""JSON output: timestamps as ISO 8601 (Flask's default would give HTTP dates)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask.json.provider import DefaultJSONProvider


class IsoJSONProvider(DefaultJSONProvider):
    sort_keys = False

    @staticmethod
    def default(o: Any) -> Any:
        if isinstance(o, datetime):
            return o.isoformat()
        return DefaultJSONProvider.default(o)
