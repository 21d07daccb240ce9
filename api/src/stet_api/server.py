"""The API's HTTP server: granian's WSGI interface, set up from the environment.

`stet-api-server` (or `python -m stet_api.server`) runs `stet_api.wsgi:app` under granian:
HTTP parsing and connection handling in Rust, the app in worker processes, each running
requests on a pool of threads. On this project's 2-core bench it served 1.4-1.5x the
facts reads of gunicorn's threaded workers with the same workers and threads, at a lower
p99 (docs/testing.md, "Benchmarks").

Settings (environment), read once at start:
- STET_SERVER_BIND         address:port to listen on (default 127.0.0.1:8000)
- STET_SERVER_WORKERS      worker processes (2)
- STET_SERVER_THREADS      request threads per worker (5): more than pooled connections
                           (STET_DB_POOL_MAX, 4), so that when the database stops answering
                           the threads without a connection refuse at once (db.py) and
                           /health stays answered
- STET_SERVER_GRACEFUL_TIMEOUT  seconds in-flight requests get to finish on SIGTERM (20)
- STET_SERVER_TLS_CERTFILE / STET_SERVER_TLS_KEYFILE  TLS on the port (key in PKCS#8), TLS 1.2+

Each worker imports the app itself (its own connection pool, never shared across fork).
A worker that dies is started again; SIGHUP replaces the workers one after the other.
The app writes its own JSON access log, so granian's is off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

APP = "stet_api.wsgi:app"


def arguments(env: Mapping[str, str]) -> list[str]:
    """granian's command line for the settings in env."""
    host, _, port = env.get("STET_SERVER_BIND", "127.0.0.1:8000").rpartition(":")
    args = [
        "--interface", "wsgi",
        "--host", host.strip("[]"),
        "--port", port,
        "--workers", env.get("STET_SERVER_WORKERS", "2"),
        "--blocking-threads", env.get("STET_SERVER_THREADS", "5"),
        "--workers-kill-timeout", env.get("STET_SERVER_GRACEFUL_TIMEOUT", "20"),
        "--respawn-failed-workers",
        "--no-access-log",
    ]  # fmt: skip
    certfile, keyfile = env.get("STET_SERVER_TLS_CERTFILE"), env.get("STET_SERVER_TLS_KEYFILE")
    if certfile or keyfile:
        args += ["--ssl-certificate", certfile or "", "--ssl-keyfile", keyfile or ""]
        args += ["--ssl-protocol-min", "tls1.2"]
    return [*args, APP]


def main() -> None:
    from granian.cli import entrypoint

    sys.argv = ["granian", *arguments(os.environ)]
    entrypoint()


if __name__ == "__main__":
    main()
