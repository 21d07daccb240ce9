"""A wrong variable type stops the role in meta/argument_specs.yml, before any task runs."""

import os
import subprocess
from pathlib import Path

SCENARIO = Path(__file__).resolve().parents[1]
REPOSITORY = SCENARIO.parents[1]


def test_wrong_type_fails_before_any_task(request):
    run = subprocess.run(
        [
            "ansible-playbook",
            "--inventory",
            request.config.option.ansible_inventory,
            "--limit",
            "stet-hardening-web",
            "--extra-vars",
            "hardening_ssh_port=notaport",
            str(SCENARIO / "converge.yml"),
        ],
        cwd=REPOSITORY,
        env={**os.environ, "ANSIBLE_ROLES_PATH": str(REPOSITORY / "roles"), "ANSIBLE_NOCOLOR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    tasks = [line for line in run.stdout.splitlines() if line.startswith("TASK [")]
    assert tasks[-1].startswith("TASK [hardening : Validating arguments against arg spec")
    assert all(not task.startswith("TASK [hardening") for task in tasks[:-1])
    error = run.stderr
    assert "hardening_ssh_port" in error
    assert "notaport" in error and "int" in error
