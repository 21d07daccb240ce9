"""The alert rules of roles/prometheus, rendered with the role's defaults, pass
`promtool check rules` and the unit tests in tests/alert_rules/ (`promtool test rules`),
and every alert the rules define is expected to fire in at least one of those tests.

promtool comes from Debian's `prometheus` package: `make test-roles` extracts it into the venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = Path(__file__).resolve().parents[1]
ROLE = ROOT / "roles" / "prometheus"
TESTS = Path(__file__).resolve().parent / "alert_rules"
PROMTOOL = shutil.which("promtool", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def role_values(kind: str) -> dict:
    """defaults/main.yml or vars/main.yml, their strings templates as the role's are."""
    return {
        name: trust_as_template(value) if isinstance(value, str) else value
        for name, value in yaml.safe_load((ROLE / kind / "main.yml").read_text()).items()
    }


def render_rules(**inventory) -> str:
    """The rules as a production inventory gets them (with Patroni, stet_db_ha, so every
    rule), with the inventory's values over the role's."""
    inventory = {"stet_db_ha": True, "groups": {"stet_db": ["stet-db-1", "stet-db-2"]}, **inventory}
    variables = {
        **role_values("defaults"),
        **inventory,
        **role_values("vars"),
        "ansible_managed": "Ansible managed",
    }
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trust_as_template((ROLE / "templates" / "stet.rules.yml.j2").read_text()))


def test_a_duration_set_in_the_inventory_changes_its_alerts_only():
    def durations(rules: str) -> dict[str, str]:
        groups = yaml.safe_load(rules)["groups"]
        return {rule["alert"]: rule.get("for") for group in groups for rule in group["rules"]}

    default = durations(render_rules())
    changed = durations(render_rules(prometheus_alert_for={"disk_full": "15m", "no_leader": "30s"}))
    assert (default["DiskAlmostFull"], changed["DiskAlmostFull"]) == ("5m", "15m")
    assert (default["PostgreSQLNoLeader"], changed["PostgreSQLNoLeader"]) == ("1m", "30s")
    assert {k: v for k, v in changed.items() if k not in ("DiskAlmostFull", "PostgreSQLNoLeader")} == {
        k: v for k, v in default.items() if k not in ("DiskAlmostFull", "PostgreSQLNoLeader")
    }


def test_one_test_restore_bound_set_in_the_inventory_keeps_the_other():
    def bounds(rules: str) -> str:
        groups = yaml.safe_load(rules)["groups"]
        [rule] = [r for group in groups for r in group["rules"] if r.get("alert") == "StetTestRestoreTooOld"]
        return rule["expr"]

    assert 'task="test_restore"} > 32 * 86400' in bounds(render_rules())
    changed = bounds(render_rules(prometheus_alert_test_restore_max_age_days={"test_restore": 40}))
    assert 'task="test_restore"} > 40 * 86400' in changed
    assert 'task="pgbackrest_test_restore"} > 8 * 86400' in changed


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory) -> Path:
    assert PROMTOOL, "promtool is missing: make test-roles puts it in the venv"
    directory = tmp_path_factory.mktemp("alert_rules")
    (directory / "stet.rules.yml").write_text(render_rules())
    for test in TESTS.glob("*.yml"):
        shutil.copy(test, directory / test.name)
    return directory


def promtool(*args: str, cwd: Path) -> str:
    result = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_rendered_rules_are_valid(rules_dir):
    assert "SUCCESS" in promtool("check", "rules", "stet.rules.yml", cwd=rules_dir)


def test_the_unit_tests_pass(rules_dir):
    tests = sorted(p.name for p in rules_dir.glob("*_test.yml"))
    assert tests
    promtool("test", "rules", *tests, cwd=rules_dir)


def test_every_alert_is_expected_to_fire_in_a_unit_test(rules_dir):
    rules = yaml.safe_load((rules_dir / "stet.rules.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule}
    fired = set()
    for test_file in rules_dir.glob("*_test.yml"):
        for test in yaml.safe_load(test_file.read_text())["tests"]:
            fired |= {case["alertname"] for case in test.get("alert_rule_test", []) if case.get("exp_alerts")}
    assert alerts - fired == set(), "alerts without a firing test"
    assert fired - alerts == set(), "tests of alerts that do not exist"


def test_every_dashboard_query_is_valid_promql(tmp_path):
    """docs/grafana-stet.json: each panel's query parses (as a recording rule checked by promtool)."""
    dashboard = json.loads((ROOT / "docs" / "grafana-stet.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(expressions) >= 12
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"q{n}", "expr": e} for n, e in enumerate(expressions)],
            }
        ]
    }
    (tmp_path / "dashboard.rules.yml").write_text(yaml.safe_dump(rules))
    assert PROMTOOL, "promtool is missing: make test-roles puts it in the venv"
    promtool("check", "rules", "dashboard.rules.yml", cwd=tmp_path)
