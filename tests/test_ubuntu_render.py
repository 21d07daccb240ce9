"""Every OS branch of the roles loads and renders: Ubuntu 24.04 as well as Debian 12.

No Ubuntu host boots on the test machine, so the Molecule scenarios prove Debian 12 only.
This suite proves what can be proven without one. With the facts an Ubuntu 24.04 host
reports (set as cacheable facts, which is where gathering puts them; nothing is gathered),
each role runs its own tasks/variables.yml, so its OS-specific vars file is chosen as on a
real host. Then every template of every role is rendered with the production inventory's
variables, on every host the role is applied to, and every task argument or `when:`
condition that depends on the OS (a variable of the role's vars/<OS>.yml, or the
distribution/os_family facts) is rendered too, with the package names of every apt task.
The same run with Debian 12 facts must differ from the Ubuntu one exactly where the
branches are meant to differ, and nowhere else.

Nothing on the machine changes: the roles run only include_vars and set_fact tasks
generated from their own task files, on the controller (connection local: no host is
contacted). The generated playbook, the run's JSON and the rendered files stay under
pytest's tmp_path (render0/<os>/).
What this cannot prove: that the packages exist and install, or that the services start,
on Ubuntu 24.04.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ROLES = ROOT / "roles"
INVENTORY = ROOT / "inventories" / "production"

# Hosts each role is applied to, as in site.yml's tier playbooks.
PLAY_HOSTS = {
    "hardening": "all",
    "postgresql": "stet_db",
    "pgbouncer": "stet_db",
    "backup": "stet_db_primary",
    "pgbackrest": "stet_db:stet_backup",
    "stet_api": "stet_api",
    "certbot": "stet_web",
    "nginx": "stet_web",
    "monitoring": "all",
    "alertmanager": "stet_monitor",
    "prometheus": "stet_monitor",
    "pki": "all",
    "etcd": "stet_dcs",
    "patroni": "stet_db",
    "haproxy": "stet_api",
}

# Roles that run after another in the same play and read its variables (its defaults, vars).
RUNS_AFTER = {"patroni": ["postgresql"]}

# What a template reads from a task that asks a running service (registered at run time).
SCRAM = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"
REGISTERED = {
    "pgbouncer": {"__pgbouncer_userlist": [{"rolname": "stet", "rolpassword": SCRAM}]},
    "patroni": {
        "__patroni_secrets": dict.fromkeys(
            ["db_replication_password", "db_rewind_password", "patroni_restapi_password"], "secret"
        )
    },
}

# Role variables shown beside the OS-specific ones (derived from them or from the facts).
EXTRA_VALUES = {
    "hardening": ["hardening_unattended_origins_patterns", "hardening_chrony_pools"],
    "postgresql": ["postgresql_version", "__postgresql_service", "__postgresql_bin_dir"],
    "stet_api": ["__stet_api_target_python"],
}

OS_FACTS = {
    "ubuntu2404": {
        "distribution": "Ubuntu",
        "distribution_major_version": "24",
        "distribution_version": "24.04",
        "distribution_release": "noble",
        "os_family": "Debian",
        "lsb": {"id": "Ubuntu", "codename": "noble", "release": "24.04", "major_release": "24"},
        "python": {
            "version": {"major": 3, "minor": 12, "micro": 3, "releaselevel": "final", "serial": 0},
            "executable": "/usr/bin/python3",
        },
    },
    "debian12": {
        "distribution": "Debian",
        "distribution_major_version": "12",
        "distribution_version": "12.8",
        "distribution_release": "bookworm",
        "os_family": "Debian",
        "lsb": {"id": "Debian", "codename": "bookworm", "release": "12", "major_release": "12"},
        "python": {
            "version": {"major": 3, "minor": 11, "micro": 2, "releaselevel": "final", "serial": 0},
            "executable": "/usr/bin/python3",
        },
    },
}

HOST_FACTS = {
    "system": "Linux",
    "architecture": "x86_64",
    "machine": "x86_64",
    "memtotal_mb": 15990,
    "processor_vcpus": 4,
    "processor_count": 1,
    "processor_cores": 4,
    "service_mgr": "systemd",
    "pkg_mgr": "apt",
}

# The vars file each role reads, per OS (roles without tasks/variables.yml read none).
READS = {
    "ubuntu2404": {
        "hardening": "Ubuntu.yml",
        "postgresql": "Ubuntu.yml",
        "certbot": "Debian.yml",
        "nginx": "Debian.yml",
        "monitoring": "Debian.yml",
        "stet_api": "Debian.yml",
        "alertmanager": "Debian.yml",
        "prometheus": "Debian.yml",
    },
    "debian12": dict.fromkeys(
        [
            "hardening",
            "postgresql",
            "certbot",
            "nginx",
            "monitoring",
            "stet_api",
            "alertmanager",
            "prometheus",
        ],
        "Debian.yml",
    ),
}

# Where Ubuntu 24.04 and Debian 12 are meant to differ: anything else that differs, or any
# of these that does not, fails.
PATRONI_DEBIAN_PARTS = "Install what Patroni takes from Debian (psycopg2, the etcd client, patronictl's diff)"
EXPECTED_DIFFERENCES = {
    "values hardening",
    "values postgresql",
    "values stet_api",
    "roles/hardening/templates/50unattended-upgrades.j2",
    "roles/hardening/templates/chrony.conf.j2",
    "roles/postgresql/tasks/install.yml: Add the PGDG repository (Ubuntu)",
    f"roles/patroni/tasks/install.yml: {PATRONI_DEBIAN_PARTS}",
}

TASK_KEYWORDS = {
    "name", "when", "vars", "loop", "loop_control", "with_items", "register", "notify", "listen",
    "tags", "become", "become_user", "become_method", "changed_when", "failed_when", "check_mode",
    "diff", "no_log", "until", "retries", "delay", "ignore_errors", "ignore_unreachable",
    "delegate_to", "delegate_facts", "run_once", "environment", "args", "throttle",
    "any_errors_fatal", "module_defaults", "timeout", "collections", "connection", "block",
    "rescue", "always",
}  # fmt: skip
TEMPLATE_MODULES = {"ansible.builtin.template", "template"}
PACKAGE_MODULES = {"ansible.builtin.apt", "apt", "ansible.builtin.package", "package"}
# Tasks that load variables or other tasks: nothing of their own to render.
LOADER_MODULES = {
    "ansible.builtin.include_vars", "include_vars", "ansible.builtin.import_tasks", "import_tasks",
    "ansible.builtin.include_tasks", "include_tasks", "ansible.builtin.import_role", "import_role",
    "ansible.builtin.include_role", "include_role", "ansible.builtin.meta", "meta",
}  # fmt: skip
OS_FACT = re.compile(r"ansible_facts\[['\"](distribution|os_family)|ansible_(distribution|os_family)")


def jinja(expression: str) -> str:
    return "{{ " + expression + " }}"


def os_var_names(role_dir: Path) -> list[str]:
    """Variables of the role's OS-specific vars files (every vars/*.yml but main.yml)."""
    names: set[str] = set()
    for path in sorted((role_dir / "vars").glob("*.yml")):
        if path.name != "main.yml":
            names |= set(yaml.safe_load(path.read_text()) or {})
    return sorted(names)


def depends_on_os(value, names: list[str]) -> bool:
    text = json.dumps(value)
    return bool(OS_FACT.search(text)) or any(re.search(rf"\b{re.escape(n)}\b", text) for n in names)


def walk(tasks, inherited_vars):
    """(task or block, vars in scope) for every entry, blocks included."""
    for entry in tasks or []:
        scope = {**inherited_vars, **(entry.get("vars") or {})}
        yield entry, scope
        for key in ("block", "rescue", "always"):
            yield from walk(entry.get(key), scope)


def module_of(task: dict) -> str | None:
    modules = [k for k in task if k not in TASK_KEYWORDS]
    return modules[0] if len(modules) == 1 else None


def probes_of(role_dir: Path) -> list[dict]:
    """What to render of each task of the role: templates, OS-dependent arguments and
    conditions (a branch taken on one OS only: all its arguments), package names."""
    names = os_var_names(role_dir)
    probes = []
    for path in sorted((role_dir / "tasks").glob("*.yml")):
        if path.name == "variables.yml":
            continue
        for index, (task, scope) in enumerate(walk(yaml.safe_load(path.read_text()), {})):
            module = module_of(task)
            if module in LOADER_MODULES:
                continue
            whens = task.get("when", [])
            whens = [str(w) for w in (whens if isinstance(whens, list) else [whens])]
            probe: dict = {"when": [jinja(f"({w}) | bool") for w in whens if depends_on_os(w, names)]}
            args = task.get(module) if module else None
            src = None
            if module in TEMPLATE_MODULES:
                probe["args"] = dict(args)
                src = args["src"]
            elif probe["when"] and isinstance(args, dict):
                probe["args"] = dict(args)
            elif isinstance(args, dict):
                probe["args"] = {k: v for k, v in args.items() if depends_on_os(v, names)}
                if module in PACKAGE_MODULES and "name" in args:
                    probe["args"]["name"] = args["name"]
            if not probe["when"] and not probe.get("args"):
                continue
            loop_var = (task.get("loop_control") or {}).get("loop_var", "item")
            loop = task.get("loop", task.get("with_items"))
            uses_loop = loop is not None and re.search(rf"\b{loop_var}\b", json.dumps(probe))
            probes.append({
                "id": f"{role_dir.name}/tasks/{path.name}#{index} {task.get('name', '')}",
                "role": role_dir.name,
                "file": path.name,
                "task": task.get("name", ""),
                "src": src,
                "probe": probe,
                "vars": scope,
                "loop": loop if uses_loop else None,
                "loop_control": task.get("loop_control") if uses_loop else None,
            })  # fmt: skip
    return probes


def render_tasks(role_dir: Path, probes: list[dict], first: int) -> list[dict]:
    """The generated task file: the role's own loader, then a set_fact per probe."""
    tasks: list[dict] = []
    if (role_dir / "tasks" / "variables.yml").exists():
        tasks.append({"name": "Load the OS-specific values", "ansible.builtin.import_tasks": "variables.yml"})
    values = {n: jinja(n) for n in os_var_names(role_dir) + EXTRA_VALUES.get(role_dir.name, [])}
    tasks.append({
        "name": f"probe {first}",
        "ansible.builtin.set_fact": {"__render_probe": {"values": values}},
    })  # fmt: skip
    for number, probe in enumerate(probes, first + 1):
        value = dict(probe["probe"])
        task_vars = dict(probe["vars"])
        if probe["src"] is not None:
            value["content"] = jinja("lookup('ansible.builtin.template', __render_src)")
            task_vars["__render_src"] = probe["src"]
        task = {"name": f"probe {number}", "ansible.builtin.set_fact": {"__render_probe": value}}
        if task_vars:
            task["vars"] = task_vars
        if probe["loop"] is not None:
            task["loop"] = probe["loop"]
            if probe["loop_control"]:
                task["loop_control"] = probe["loop_control"]
        tasks.append(task)
    return tasks


def inventory_hosts() -> dict[str, str]:
    """Every host of the inventory and its address (ansible_host)."""
    hosts: dict[str, str] = {}

    def visit(group):
        for name, host_vars in ((group or {}).get("hosts") or {}).items():
            hosts.setdefault(name, (host_vars or {}).get("ansible_host", "10.0.9.9"))
        for child in ((group or {}).get("children") or {}).values():
            visit(child)

    visit(yaml.safe_load((INVENTORY / "hosts.yml").read_text())["all"])
    return hosts


def ansible_playbook() -> str:
    beside = Path(sys.executable).with_name("ansible-playbook")
    found = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    assert found, "ansible-playbook not found: run from the repository's .venv (make venv)"
    return found


def render(os_name: str, workdir: Path, roles_root: Path = ROLES) -> dict:
    """Runs every role's loader and probes with the facts of os_name.

    Returns {"values": {role: {host: {name: value}}}, "probes": {id: {host: [rendered, ...]}},
    "meta": {id: probe}, "hosts": {role: [host, ...]}, "loaded": {role: {host: [vars file]}}}.
    """
    workdir.mkdir(parents=True)
    roles_dir = workdir / "roles"
    facts = {
        host: {
            **HOST_FACTS,
            **OS_FACTS[os_name],
            "hostname": host,
            "nodename": host,
            "fqdn": host,
            "default_ipv4": {"address": address, "interface": "eth0", "alias": "eth0"},
        }
        for host, address in inventory_hosts().items()
    }
    # What fact gathering would have stored: cacheable facts land in ansible_facts as well.
    names = sorted(next(iter(facts.values())))
    plays = [{
        "name": "facts",
        "hosts": "all",
        "gather_facts": False,
        "vars": {"__render_facts": facts},
        "tasks": [{
            "name": "The facts of the OS under test",
            "ansible.builtin.set_fact": {
                "cacheable": True,
                **{f"ansible_{n}": jinja(f"__render_facts[inventory_hostname]['{n}']") for n in names},
            },
        }, {
            # playbooks/facts.yml's groups before Patroni answers: the inventory's primary leads.
            "name": "The leader and standby groups",
            "ansible.builtin.group_by": {
                "key": jinja(
                    "'stet_db_leader' if inventory_hostname in groups['stet_db_primary']"
                    " else 'stet_db_standby'"
                ),
            },
            "when": "inventory_hostname in groups['stet_db']",
        }],
    }]  # fmt: skip
    # Each role as a copy made of links to the real files, plus the generated tasks/_render.yml.
    meta, number = {}, 0
    for role in sorted(PLAY_HOSTS):
        source, target = roles_root / role, roles_dir / role
        (target / "tasks").mkdir(parents=True)
        for entry in source.iterdir():
            if entry.name != "tasks":
                (target / entry.name).symlink_to(entry)
        for entry in (source / "tasks").iterdir():
            (target / "tasks" / entry.name).symlink_to(entry)
        # A role's meta dependencies (pki) run their main.yml: here it only loads their defaults.
        (target / "tasks" / "main.yml").unlink()
        (target / "tasks" / "main.yml").write_text("[]\n")
        probes = probes_of(source)
        meta[f"{role}/values"] = number
        for offset, probe in enumerate(probes, 1):
            meta[probe["id"]] = number + offset
        (target / "tasks" / "_render.yml").write_text(yaml.safe_dump(render_tasks(source, probes, number)))
        number += len(probes) + 1
        plays.append({
            "name": role,
            "hosts": PLAY_HOSTS[role],
            "gather_facts": False,
            "vars": REGISTERED.get(role, {}),
            "tasks": [
                {
                    "name": f"{before}'s variables",
                    "ansible.builtin.include_role": {
                        "name": before, "tasks_from": "variables", "public": True,
                    },
                }
                for before in RUNS_AFTER.get(role, [])
            ] + [{
                "name": role,
                "ansible.builtin.include_role": {"name": role, "tasks_from": "_render"},
            }],
        })  # fmt: skip
    (workdir / "playbook.yml").write_text(yaml.safe_dump(plays))

    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(roles_dir),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json",
        # Not profile_tasks (ansible.cfg): stdout must be JSON only.
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.json",
        "ANSIBLE_LOCAL_TEMP": str(workdir / "tmp"),
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
        "ANSIBLE_NOCOLOR": "1",
    }
    command = [ansible_playbook(), "-i", str(INVENTORY), "-e", "ansible_connection=local"]
    command.append(str(workdir / "playbook.yml"))
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    (workdir / "ansible.json").write_text(run.stdout)
    (workdir / "ansible.stderr").write_text(run.stderr)
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        tail = f"{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
        pytest.fail(f"ansible-playbook ({os_name}) exit {run.returncode}:\n{tail}")

    errors = []
    by_number: dict[int, dict[str, list]] = {}
    hosts: dict[str, list[str]] = {}
    loaded: dict[str, dict[str, list[str]]] = {}
    names_of = {n: key for key, n in meta.items()}
    for play in report["plays"]:
        role = play["play"]["name"]
        hosts[role] = []
        for task in play["tasks"]:
            match = re.search(r"probe (\d+)$", task["task"]["name"])
            for host, result in task["hosts"].items():
                if host not in hosts[role]:
                    hosts[role].append(host)
                for item in result.get("results", [result]):
                    if item.get("failed") or item.get("unreachable"):
                        what = names_of[int(match[1])] if match else task["task"]["name"]
                        errors.append(f"{what} on {host}: {item.get('msg')}")
                    elif match and "ansible_facts" in item:
                        by_number.setdefault(int(match[1]), {}).setdefault(host, []).append(
                            item["ansible_facts"]["__render_probe"]
                        )
                    elif "ansible_included_var_files" in item:
                        loaded.setdefault(role, {})[host] = [
                            "/".join(Path(f).parts[-3:]) for f in item["ansible_included_var_files"]
                        ]
    assert not errors and run.returncode == 0, f"{os_name}: exit {run.returncode}\n" + "\n".join(errors)

    values = {
        key.split("/")[0]: {host: results[0]["values"] for host, results in by_number.get(n, {}).items()}
        for key, n in meta.items()
        if key.endswith("/values")
    }
    probes = {key: by_number.get(n, {}) for key, n in meta.items() if not key.endswith("/values")}
    static = {p["id"]: p for role in PLAY_HOSTS for p in probes_of(roles_root / role)}

    # The rendered files, for a look when something fails.
    for per_host in probes.values():
        for host, results in per_host.items():
            for result in results:
                if "content" in result:
                    out = workdir / "rendered" / host / str(result["args"]["dest"]).lstrip("/")
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(result["content"])
    return {"values": values, "probes": probes, "meta": static, "hosts": hosts, "loaded": loaded}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    base = tmp_path_factory.mktemp("render")
    with ThreadPoolExecutor(len(OS_FACTS)) as pool:
        runs = {os_name: pool.submit(render, os_name, base / os_name) for os_name in OS_FACTS}
        return {os_name: run.result() for os_name, run in runs.items()}


def task_of(rendered_os: dict, role: str, file: str, task: str) -> dict:
    """The rendered arguments and conditions of a task, which must be the same on every host."""
    meta = rendered_os["meta"]
    keys = [k for k, p in meta.items() if (p["role"], p["file"], p["task"]) == (role, file, task)]
    assert len(keys) == 1, f"no single task {task!r} in roles/{role}/tasks/{file}: {keys}"
    per_host = rendered_os["probes"][keys[0]]
    results = [{k: v for k, v in r.items() if k != "content"} for rs in per_host.values() for r in rs]
    assert results and all(r == results[0] for r in results), per_host
    return results[0]


def contents(rendered_os: dict, role: str) -> dict[str, dict[str, str]]:
    """{template src: {host: content}} of a role (looped templates: one src per item)."""
    out: dict[str, dict[str, str]] = {}
    for key, per_host in rendered_os["probes"].items():
        if rendered_os["meta"][key]["role"] == role and rendered_os["meta"][key]["src"] is not None:
            for host, results in per_host.items():
                for result in results:
                    out.setdefault(result["args"]["src"], {})[host] = result["content"]
    return out


def values_of(rendered_os: dict, role: str, name: str):
    """A role variable, which must be the same on every host."""
    found = {json.dumps(v[name]) for v in rendered_os["values"][role].values()}
    assert len(found) == 1, f"{role}: {name} differs between hosts: {found}"
    return json.loads(found.pop())


def test_every_role_is_covered():
    assert set(PLAY_HOSTS) == {p.name for p in ROLES.iterdir() if (p / "tasks" / "main.yml").exists()}


@pytest.mark.parametrize("os_name", sorted(OS_FACTS))
def test_each_role_reads_its_vars_file(rendered, os_name):
    for role in PLAY_HOSTS:
        # Its own files only: a role that runs after another loads that one's too (RUNS_AFTER).
        per_host = {
            host: own
            for host, files in rendered[os_name]["loaded"].get(role, {}).items()
            if (own := [f for f in files if f.startswith(f"{role}/")])
        }
        if role not in READS[os_name]:
            assert not (ROLES / role / "tasks" / "variables.yml").exists(), f"{role}: add it to READS"
            assert not per_host
            continue
        assert set(per_host) == set(rendered[os_name]["hosts"][role]), f"{role}: not loaded on every host"
        for host, files in per_host.items():
            assert files == [f"{role}/vars/{READS[os_name][role]}"], f"{role} on {host}"


def test_every_os_vars_file_is_read(rendered):
    """No vars/<OS>.yml that neither Debian 12 nor Ubuntu 24.04 reads."""
    read = {
        f
        for result in rendered.values()
        for per_host in result["loaded"].values()
        for files in per_host.values()
        for f in files
    }
    on_disk = {
        f"{p.parent.parent.name}/vars/{p.name}" for p in ROLES.glob("*/vars/*.yml") if p.name != "main.yml"
    }
    assert not on_disk - read, f"vars files neither OS reads: {sorted(on_disk - read)}"
    assert not read - on_disk, f"read, but not on disk: {sorted(read - on_disk)}"


@pytest.mark.parametrize("os_name", sorted(OS_FACTS))
def test_every_template_renders(rendered, os_name):
    result = rendered[os_name]
    for role in PLAY_HOSTS:
        assert result["hosts"][role], f"{role}: no host ran the role"
        assert set(result["values"][role]) == set(result["hosts"][role]), f"{role}: values missing on a host"
        templates = {p.name for p in (ROLES / role / "templates").glob("*.j2")}
        done = contents(result, role)
        assert templates == set(done), f"{role}: templates no task renders: {templates ^ set(done)}"
        for src, per_host in done.items():
            assert set(per_host) == set(result["hosts"][role]), f"{role}/{src}: not rendered on every host"
            for host, text in per_host.items():
                assert text.strip(), f"{role}/{src} on {host} is empty"
                # `{{ $labels.x }}` in alert rules is Prometheus' own (Go) templating, not Jinja.
                assert not re.search(r"\{\{(?! \$)", text), f"{role}/{src} on {host}: Jinja left"
                assert "{%" not in text, f"{role}/{src} on {host}: Jinja left"


def test_ubuntu_2404_branch(rendered):
    ubuntu = rendered["ubuntu2404"]
    # PostgreSQL 15 from the PGDG repository: noble itself ships 16.
    pgdg = task_of(ubuntu, "postgresql", "install.yml", "Add the PGDG repository (Ubuntu)")
    assert pgdg["when"] == [True]
    assert pgdg["args"]["suites"] == ["noble-pgdg"]
    assert pgdg["args"]["uris"] == "https://apt.postgresql.org/pub/repos/apt"
    assert pgdg["args"]["signed_by"] == "https://www.postgresql.org/media/keys/ACCC4CF8.asc"
    server = task_of(ubuntu, "postgresql", "install.yml", "Install the PostgreSQL server")
    assert server["args"]["name"] == ["postgresql-15", "postgresql-client-15"]
    assert values_of(ubuntu, "postgresql", "__postgresql_service") == "postgresql@15-main"
    assert values_of(ubuntu, "postgresql", "__postgresql_bin_dir") == "/usr/lib/postgresql/15/bin"

    # Ubuntu's security archives and NTP pool, in the files unattended-upgrades and chrony read.
    hardening = contents(ubuntu, "hardening")
    for text in hardening["50unattended-upgrades.j2"].values():
        assert '"origin=Ubuntu,archive=${distro_codename}-security,label=Ubuntu";' in text
        assert "Debian" not in text
    for text in hardening["chrony.conf.j2"].values():
        assert "pool ntp.ubuntu.com iburst" in text
        assert "debian" not in text

    # Package names, paths, and the Python the API's wheels are fetched for (3.12 on noble).
    certbot = task_of(ubuntu, "certbot", "install.yml", "Install certbot and its helpers")
    assert certbot["args"]["name"] == ["certbot", "python3-cryptography", "openssl"]
    nginx = task_of(ubuntu, "nginx", "install.yml", "Install the nginx packages")
    assert nginx["args"]["name"] == ["nginx", "ufw"]
    api = task_of(ubuntu, "stet_api", "setup.yml", "Install the packages the API needs")
    assert api["args"]["name"] == ["python3-venv", "python3-psycopg2", "python3-packaging", "ufw"]
    venv = task_of(
        ubuntu, "stet_api", "venv.yml", "Create the venv and install the API from the release's wheels"
    )
    assert venv["args"]["virtualenv_command"] == "/usr/bin/python3 -m venv"
    assert values_of(ubuntu, "stet_api", "__stet_api_target_python") == "3.12"
    node = task_of(ubuntu, "monitoring", "node_exporter.yml", "Install the node exporter")
    assert node["args"]["name"] == "prometheus-node-exporter"
    node = task_of(ubuntu, "monitoring", "node_exporter.yml", "Bind the node exporter to the private address")
    assert node["args"]["dest"] == "/etc/default/prometheus-node-exporter"
    pg = task_of(
        ubuntu, "monitoring", "postgres_exporter.yml", "Bind the PostgreSQL exporter to the private address"
    )
    assert pg["args"]["dest"] == "/etc/default/prometheus-postgres-exporter"
    # Patroni's diff module: Debian 12 packages it as cdiff, later releases as ydiff.
    patroni = task_of(ubuntu, "patroni", "install.yml", PATRONI_DEBIAN_PARTS)
    assert patroni["args"]["name"] == ["python3-venv", "python3-psycopg2", "python3-etcd", "python3-ydiff"]


def test_debian_12_branch(rendered):
    debian = rendered["debian12"]
    assert task_of(debian, "postgresql", "install.yml", "Add the PGDG repository (Ubuntu)")["when"] == [False]
    for text in contents(debian, "hardening")["50unattended-upgrades.j2"].values():
        assert '"origin=Debian,codename=${distro_codename}-security,label=Debian-Security";' in text
        assert "Ubuntu" not in text
    for text in contents(debian, "hardening")["chrony.conf.j2"].values():
        assert "pool 2.debian.pool.ntp.org iburst" in text
    assert values_of(debian, "stet_api", "__stet_api_target_python") == "3.11"
    patroni = task_of(debian, "patroni", "install.yml", PATRONI_DEBIAN_PARTS)
    assert patroni["args"]["name"] == ["python3-venv", "python3-psycopg2", "python3-etcd", "python3-cdiff"]


def test_branches_differ_where_they_should(rendered):
    ubuntu, debian = rendered["ubuntu2404"], rendered["debian12"]
    differ = {f"values {role}" for role in PLAY_HOSTS if ubuntu["values"][role] != debian["values"][role]}
    assert set(ubuntu["probes"]) == set(debian["probes"])
    for key, per_host in ubuntu["probes"].items():
        meta = ubuntu["meta"][key]
        assert set(per_host) == set(debian["probes"][key]), key
        for host, results in per_host.items():
            for mine, theirs in zip(results, debian["probes"][key][host], strict=True):
                if mine == theirs:
                    continue
                if meta["src"] is not None and {**mine, "content": ""} == {**theirs, "content": ""}:
                    differ.add(f"roles/{meta['role']}/templates/{mine['args']['src']}")
                else:
                    differ.add(f"roles/{meta['role']}/tasks/{meta['file']}: {meta['task']}")
    assert differ == EXPECTED_DIFFERENCES


def tool(name: str) -> str:
    """promtool or amtool: `make test-roles` extracts them from Debian's packages into the venv."""
    found = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert found, f"{name} is missing: make test-roles puts it in the venv"
    return found


def test_the_production_monitoring_host_scrapes_patroni_and_etcd(rendered, tmp_path):
    """Prometheus' configuration as the production inventory renders it: a valid file
    (`promtool check config`) with Patroni's REST API and the API instances over TLS, and
    every etcd member."""
    promtool = tool("promtool")
    (_monitor, config), *others = contents(rendered["debian12"], "prometheus")["prometheus.yml.j2"].items()
    assert not others, "one monitoring host in the production inventory"
    (tmp_path / "prometheus.yml").write_text(config)
    check = subprocess.run(
        [promtool, "check", "config", "--syntax-only", "prometheus.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    jobs = {job["job_name"]: job for job in yaml.safe_load(config)["scrape_configs"]}

    def targets(job: str) -> dict[str, list[str]]:
        return {c["labels"]["host"]: c["targets"] for c in jobs[job]["static_configs"]}

    # Patroni's REST API and the API instances (stet_api_tls) answer over TLS only.
    for job in ("patroni", "stet_api"):
        assert jobs[job]["scheme"] == "https", job
        assert jobs[job]["tls_config"] == {"ca_file": "/etc/ssl/stet-pki/ca.crt"}, job
    assert sorted(targets("patroni")) == ["stet-db-1", "stet-db-2"]
    assert all(t[0].endswith(":8008") for t in targets("patroni").values())
    members = yaml.safe_load((INVENTORY / "hosts.yml").read_text())["all"]["children"]["stet_dcs"]["hosts"]
    assert sorted(targets("etcd")) == sorted(members)
    assert all(t[0].endswith(":2381") for t in targets("etcd").values())


def test_the_production_alerts_go_by_mail_through_the_smarthost(rendered, tmp_path):
    """Alertmanager's configuration as the production inventory renders it (mail to the
    operators through its smarthost, the password a file): `amtool check-config` accepts it,
    and every alert, a database outage as a tenant's escalation, routes to the receiver
    that mails the inventory's recipients and sends the resolution too."""
    amtool = tool("amtool")
    (_monitor, config), *others = contents(rendered["debian12"], "alertmanager")[
        "alertmanager.yml.j2"
    ].items()
    assert not others, "one monitoring host in the production inventory"
    (tmp_path / "alertmanager.yml").write_text(config)

    def run(*args: str) -> str:
        done = subprocess.run([amtool, *args], cwd=tmp_path, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    checked = run("check-config", "alertmanager.yml")
    assert "SUCCESS" in checked and " - 1 receivers" in checked, checked
    for labels in (["alertname=PostgreSQLDown", "severity=critical"], ["alertname=StetTenantEscalationWarn"]):
        run(
            "config",
            "routes",
            "test",
            "--config.file=alertmanager.yml",
            "--verify.receivers=stet-operators",
            *labels,
        )
    inventory = yaml.safe_load((INVENTORY / "group_vars" / "stet_monitor.yml").read_text())
    parsed = yaml.safe_load(config)
    assert parsed["global"]["smtp_smarthost"] == inventory["alertmanager_smtp_smarthost"]
    assert parsed["global"]["smtp_auth_password_file"].endswith("/smtp_password")
    assert "smtp_auth_password" not in parsed["global"]
    [receiver] = parsed["receivers"]
    mails = receiver["email_configs"]
    assert [m["to"] for m in mails] == inventory["alertmanager_mail_recipients"]
    assert all(m["send_resolved"] for m in mails)
