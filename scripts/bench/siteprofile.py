"""Figures of two site.yml runs from their output (ansible.posix.profile_tasks enabled).

    python siteprofile.py FIRST_LOG FIRST_SECONDS SECOND_LOG SECOND_SECONDS OUT_JSON [--top N]

Prints the wall time of each run, the first run's N slowest tasks and the second run's
changed count (with the tasks that changed), and writes the same to OUT_JSON. Exit 1 when
the second run changed or failed anything: a second run of site.yml must change nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
# profile_tasks' summary: "role : task name ------------------ 12.34s"
PROFILE_ROW = re.compile(r"^(.+?)\s+-{3,}\s+(\d+(?:\.\d+)?)s$")
# profile_tasks' timestamp lines end with the run's elapsed time: "(0:00:01.234)  0:05:12.345 ****"
ELAPSED = re.compile(r"\)\s+(\d+):(\d\d):(\d\d(?:\.\d+)?)\s+\*+\s*$")
TASK = re.compile(r"^(?:TASK|RUNNING HANDLER) \[(.+)\]")


def parse(log: Path) -> dict:
    lines = [ANSI.sub("", line).rstrip() for line in log.read_text(errors="replace").splitlines()]
    recap = {"ok": 0, "changed": 0, "unreachable": 0, "failed": 0}
    hosts: set[str] = set()
    profile: list[tuple[str, float]] = []
    elapsed = None
    changed_tasks: list[str] = []
    task = None
    in_profile = False
    for line in lines:
        match = TASK.match(line)
        if match:
            task = match.group(1)
            in_profile = False
            continue
        match = RECAP.match(line)
        if match:
            hosts.add(match.group(1))
            for key, value in zip(recap, match.groups()[1:], strict=True):
                recap[key] += int(value)
            continue
        match = ELAPSED.search(line)
        if match:
            hours, minutes, seconds = match.groups()
            elapsed = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
        if line.startswith("====="):
            # One summary per playbook run: the last one is site.yml's.
            in_profile, profile = True, []
            continue
        if in_profile:
            match = PROFILE_ROW.match(line)
            if match:
                profile.append((match.group(1).strip(), float(match.group(2))))
            continue
        if line.startswith("changed:") and task and task not in changed_tasks:
            changed_tasks.append(task)
    return {
        "recap": recap,
        "hosts": sorted(hosts),
        "ansible_elapsed_seconds": elapsed,
        "slowest_tasks": [
            {"task": name, "seconds": seconds} for name, seconds in sorted(profile, key=lambda row: -row[1])
        ],
        "changed_tasks": changed_tasks,
    }


def minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first_log", type=Path)
    parser.add_argument("first_seconds", type=float)
    parser.add_argument("second_log", type=Path)
    parser.add_argument("second_seconds", type=float)
    parser.add_argument("out_json", type=Path)
    parser.add_argument("--top", type=int, default=10)
    args = parser.parse_args(argv)

    first, second = parse(args.first_log), parse(args.second_log)
    first["wall_seconds"], second["wall_seconds"] = args.first_seconds, args.second_seconds
    first["slowest_tasks"] = first["slowest_tasks"][: args.top]
    lines = [
        f"site.yml, first run (bare hosts -> serving): {minutes(args.first_seconds)} wall"
        f" ({args.first_seconds:.1f} s), recap {first['recap']}",
        f"site.yml, second run (idempotent):           {minutes(args.second_seconds)} wall"
        f" ({args.second_seconds:.1f} s), changed={second['recap']['changed']}"
        f" failed={second['recap']['failed']}",
    ]
    if second["recap"]["changed"] or second["changed_tasks"]:
        lines.append("  SECOND RUN CHANGED (a bug): " + "; ".join(second["changed_tasks"] or ["?"]))
    lines.append(f"slowest {args.top} tasks of the first run (profile_tasks):")
    if not first["slowest_tasks"]:
        lines.append("  (no profile_tasks summary found in the log)")
    for row in first["slowest_tasks"]:
        lines.append(f"  {row['seconds']:>8.2f} s  {row['task']}")
    print("\n".join(lines))
    args.out_json.write_text(json.dumps({"first": first, "second": second, "lines": lines}, indent=2) + "\n")
    bad = second["recap"]["changed"] or second["recap"]["failed"] or second["recap"]["unreachable"]
    bad = bad or first["recap"]["failed"] or first["recap"]["unreachable"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
