#!/usr/bin/python3
"""Check a pgbouncer.ini before it replaces the live one (PgBouncer has no test mode).

Usage: pgbouncer-check-config FILE. Exit 0 when the file parses and its values are
usable, 1 with one line per problem on stderr otherwise.
"""

from __future__ import annotations

import configparser
import os
import sys

CHOICES = {
    "pool_mode": {"session", "transaction", "statement"},
    "auth_type": {"scram-sha-256", "md5", "cert", "hba", "pam", "plain", "trust", "any"},
}
INTEGERS = {"listen_port", "max_client_conn", "default_pool_size", "reserve_pool_size", "min_pool_size"}
REQUIRED = {"listen_addr", "listen_port", "auth_type", "auth_file", "pool_mode"}
DATABASE_KEYS = {"host", "port", "dbname", "user", "password", "auth_user", "pool_size", "pool_mode"}


def problems(path: str) -> list[str]:
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"), strict=True)
    try:
        with open(path, encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, configparser.Error) as error:
        return [f"cannot parse: {error}"]
    found = []
    if not parser.has_section("pgbouncer") or not parser.has_section("databases"):
        return ["sections [databases] and [pgbouncer] are both required"]
    settings = parser["pgbouncer"]
    found += [f"[pgbouncer] {key} is missing" for key in sorted(REQUIRED - set(settings))]
    for key, allowed in CHOICES.items():
        if key in settings and settings[key] not in allowed:
            found.append(f"[pgbouncer] {key} = {settings[key]}: expected one of {sorted(allowed)}")
    for key in sorted(INTEGERS & set(settings)):
        if not settings[key].isdigit():
            found.append(f"[pgbouncer] {key} = {settings[key]}: expected a whole number")
    if "auth_file" in settings and not os.access(settings["auth_file"], os.R_OK):
        found.append(f"[pgbouncer] auth_file {settings['auth_file']} is not readable")
    for name, connstr in parser["databases"].items():
        pairs = [item.partition("=") for item in connstr.split()]
        unknown = [key for key, sep, value in pairs if not sep or not value or key not in DATABASE_KEYS]
        if unknown:
            found.append(f"[databases] {name}: bad or unknown entries {unknown}")
    return found


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 1
    found = problems(sys.argv[1])
    for problem in found:
        print(f"{sys.argv[1]}: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
