"""The API and the stet.ops collection read the same migration file names and API keys.

Neither imports the other at run time (the collection's modules run on the hosts, the API
from its own wheel), so each keeps its copy of the rule; these tests hold the copies together.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import pytest
from stet_api import auth, migrations_bundle

MODULE_UTILS = (
    Path(__file__).resolve().parents[2] / "collections/ansible_collections/stet/ops/plugins/module_utils"
)


@cache
def _module_utils(name: str):
    spec = importlib.util.spec_from_file_location(f"stet_ops_{name}", MODULE_UTILS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_migration_names_follow_one_rule():
    assert migrations_bundle.MIGRATION_NAME.pattern == _module_utils("migrations")._FILE_NAME.pattern


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("001_initial.sql", 1),
        ("12_Add-index.v2.sql", 12),
        ("1_x.sql", 1),
        ("x_1.sql", None),
        ("001_.sql", None),
    ],
)
def test_both_sides_read_a_migration_name_alike(name, version):
    for rule in (migrations_bundle.MIGRATION_NAME, _module_utils("migrations")._FILE_NAME):
        match = rule.fullmatch(name)
        assert (int(match["version"]) if match else None) == version


def test_api_keys_follow_one_rule():
    assert auth.TOKEN_PATTERN.pattern == _module_utils("api_tokens")._TOKEN.pattern
