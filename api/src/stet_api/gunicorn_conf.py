"""gunicorn settings for the systemd units (`-c python:stet_api.gunicorn_conf`).

The unit gives the bind address (--bind or GUNICORN_BIND); workers and timeouts come
from the environment so one unit template serves every host size.
"""

import os

from prometheus_client import multiprocess

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# TLS on the bound port when the unit names a certificate (the platform CA's, stet_api role);
# Python's server context refuses anything older than TLS 1.2.
certfile = os.environ.get("GUNICORN_CERTFILE")
keyfile = os.environ.get("GUNICORN_KEYFILE")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
# Threaded workers keep client connections alive (sync workers close each one) and overlap
# one request's database wait with another's Python work. More threads than pooled
# connections (STET_DB_POOL_MAX, 4): when the database stops answering, the threads
# without a connection refuse at once (db.py) and keep /health answered.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gthread")
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# On SIGTERM (systemctl stop/restart) let in-flight requests finish.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
# The app writes its own JSON access log with a request id; gunicorn's would duplicate it.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Load the app in each worker, not the master: the connection pool must not be shared
# across fork(), and a HUP then picks up a newly installed release.
preload_app = False
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10


def child_exit(server, worker):
    """Drop a dead worker's live gauges from the multiprocess metrics directory."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
