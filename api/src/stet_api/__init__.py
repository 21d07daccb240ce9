"""STET correction service API."""

from stet_api.app import create_app

__all__ = ["create_app"]
