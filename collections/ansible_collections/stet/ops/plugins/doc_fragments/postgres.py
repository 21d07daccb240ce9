# Copyright: STET Ops contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Connection options shared by the stet.ops modules that talk to PostgreSQL."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  dsn_file:
    description:
      - Path, on the managed host, of a file holding the whole connection string
        (C(postgresql://user:password@host:port/db?sslmode=...)) or a libpq
        C(key=value) string, such as C(/etc/stet/secrets/database_url).
      - The secret is read on the managed host and never enters Ansible variables
        or results.
      - Mutually exclusive with O(login_host), O(login_unix_socket), O(login_user),
        O(login_password), O(port) and O(db). O(ssl_mode), O(ca_cert) and
        O(connect_timeout) still apply on top of it.
    type: path
  login_host:
    description:
      - Host running PostgreSQL. When neither this nor O(login_unix_socket) is set,
        libpq's default (the local socket) is used.
    type: str
    aliases: [host]
  login_unix_socket:
    description:
      - Directory of the PostgreSQL Unix socket, for local peer authentication.
    type: path
    aliases: [unix_socket]
  port:
    description:
      - PostgreSQL port. Defaults to 5432 when not set.
    type: int
    aliases: [login_port]
  login_user:
    description:
      - Role to log in as. Defaults to C(postgres) when not set.
    type: str
    aliases: [login]
  login_password:
    description:
      - Password of O(login_user). Prefer O(dsn_file) to keep it out of Ansible variables.
    type: str
  db:
    description:
      - Database to connect to. Defaults to C(postgres) when not set.
    type: str
    aliases: [login_db]
  ssl_mode:
    description:
      - libpq C(sslmode) of the connection.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
    default: prefer
  ca_cert:
    description:
      - CA certificate(s) that verify the server, for O(ssl_mode=verify-ca) or
        O(ssl_mode=verify-full).
    type: path
    aliases: [ssl_rootcert]
  connect_timeout:
    description:
      - Seconds to wait for the connection to be established.
    type: int
    default: 10
requirements:
  - psycopg2 (C(python3-psycopg2) on Debian/Ubuntu, or C(psycopg2-binary) from PyPI) on the managed host
"""
