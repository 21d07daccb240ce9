"""Is this release ready on this host? `python -m stet_api.preflight`, before it goes live.

Builds the app from the environment exactly as an instance does at start (so every
configuration check runs) and asks it /ready: database reachable, schema inside this
code's window. Prints the /ready answer, or the configuration error, as one JSON line.
Exit 0 when ready, 1 otherwise.

Deploys run it with the new release's own interpreter before they point `current` at it:
a release that would not start, or not serve on the schema it finds, never becomes what
the instances (or a reboot) start.
"""

from __future__ import annotations

import json
import sys

from stet_api.app import create_app
from stet_api.config import ConfigError


def main() -> int:
    try:
        app = create_app()
    except ConfigError as error:
        error_body = {"code": "CONFIGURATION", "message": str(error)}
        print(json.dumps({"status": "unavailable", "error": error_body}))
        return 1
    try:
        response = app.test_client().get("/ready")
        print(json.dumps(response.get_json(), sort_keys=True))
        return 0 if response.status_code == 200 else 1
    finally:
        app.extensions["stet_pool"].close()


if __name__ == "__main__":
    sys.exit(main())
