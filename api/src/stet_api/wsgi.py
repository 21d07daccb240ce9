"""WSGI entry point, `stet_api.wsgi:app`, which stet_api.server serves with granian."""

from stet_api.app import create_app

app = create_app()
