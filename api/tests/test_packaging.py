"""The wheel the deploy role installs carries the migrations /ready compares against."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

API_DIR = Path(__file__).resolve().parents[1]


def test_wheel_ships_every_migration_and_the_server_command(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(API_DIR), "-w", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("stet_api-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {Path(name).name for name in names if name.startswith("stet_api/migrations/")}
    assert shipped == {path.name for path in (API_DIR / "migrations").glob("*.sql")}
    assert {"stet_api/wsgi.py", "stet_api/server.py"} <= names
    # The command the systemd units run (venv/bin/stet-api-server).
    (entry_points,) = [name for name in names if name.endswith(".dist-info/entry_points.txt")]
    assert "stet-api-server = stet_api.server:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
