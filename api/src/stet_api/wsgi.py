"""gunicorn entry point: `gunicorn -c python:stet_api.gunicorn_conf stet_api.wsgi:app`."""

from stet_api.app import create_app

app = create_app()
