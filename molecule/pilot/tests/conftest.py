"""The pilot's end-to-end tests: requests over HTTPS from a client host (the ACME host,
outside the pilot) to the API host's nginx, and playbooks run against the pilot
(molecule/shared/e2e.py)."""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
from e2e import MONITORING_TENANT, ROOT_CA, Topology

API_HOST = "stet-pilot-api"
DB_HOST = "stet-pilot-db"
TOPOLOGY = Topology(site=API_HOST, client="stet-pilot-acme", token_host=API_HOST)
CLIENT = TOPOLOGY.client
SITE = TOPOLOGY.url
host, run_ok, api, playbook = TOPOLOGY.host, TOPOLOGY.run_ok, TOPOLOGY.api, TOPOLOGY.playbook
__all__ = [
    "API_HOST",
    "CLIENT",
    "DB_HOST",
    "MONITORING_TENANT",
    "ROOT_CA",
    "SITE",
    "api",
    "host",
    "playbook",
    "run_ok",
]


@pytest.fixture(scope="session")
def client():
    return TOPOLOGY.prepare_client()
