"""A wrong variable type stops the hardening role in meta/argument_specs.yml, before any task runs."""

from __future__ import annotations

from conftest import API, ansible_playbook


def test_wrong_type_fails_before_any_task(request):
    run = ansible_playbook(
        request, "converge.yml", "--limit", API, "--extra-vars", "hardening_ssh_port=notaport"
    )
    assert run.returncode == 2, run.stdout + run.stderr
    tasks = [line for line in run.stdout.splitlines() if line.startswith("TASK [")]
    assert tasks[-1].startswith("TASK [hardening : Validating arguments against arg spec")
    assert all(not task.startswith("TASK [hardening") for task in tasks[:-1])
    error = run.stderr
    assert "hardening_ssh_port" in error
    assert "notaport" in error and "int" in error
