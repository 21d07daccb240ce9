#!/usr/bin/python
# Copyright: STET Ops contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# Ansible modules open with their documentation strings, so imports come after them.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: api_key
short_description: Create, rotate and revoke a tenant's named STET API key
version_added: 1.0.0
description:
  - Manages one named API key of a tenant directly in the STET database (table C(api_keys)),
    the way the API checks it - the token C(stet_<key id>_<secret>) is given to the client
    once, and only the SHA-256 of the secret is stored.
  - The token exists only at creation. With O(token_file) the module writes it to a file on
    the managed host (mode 0600) and never returns it, so it never travels through Ansible
    output. Without O(token_file) the token is returned in RV(token) - give such a task
    C(no_log=true) and write the token to a 0600 file yourself.
  - V(present) is idempotent - an active key of that name is left alone. When O(token_file)
    is set, that file must hold the active key's valid token, otherwise the task fails
    rather than silently replacing a key other clients may use.
author:
  - STET Ops team (@stet-ops)
extends_documentation_fragment:
  - stet.ops.postgres
attributes:
  check_mode:
    description: Reports what would change; no key is created or revoked, no file written.
    support: full
  diff_mode:
    description: Shows the active key id before and after.
    support: full
options:
  tenant_id:
    description:
      - Tenant (UUID) owning the key.
    type: str
    required: true
  name:
    description:
      - Name of the key, unique among the tenant's active keys (for example C(health-check)).
    type: str
    required: true
  state:
    description:
      - V(present) creates the key when the tenant has no active key of that name.
      - V(rotated) revokes the active key (if any) and creates a new one; always a change.
      - V(absent) revokes the active key and removes O(token_file) when set.
    type: str
    choices: [present, rotated, absent]
    default: present
  token_file:
    description:
      - Path, on the managed host, where a new token is written (mode 0600, owned by the
        connecting user; set its owner afterwards with M(ansible.builtin.file)).
      - Its directory must exist.
    type: path
notes:
  - Requires the C(api_keys) table, created by the API's migrations (M(stet.ops.migrate)).
"""

EXAMPLES = r"""
- name: Give the health-check job its own key, written to a file only root can read
  stet.ops.api_key:
    dsn_file: /etc/stet/secrets/database_url
    tenant_id: 6f1c0a52-3b8e-4e57-9a55-1d2c3b4a5f60
    name: health-check
    token_file: /etc/stet/keys/health-check.token

- name: Rotate that key
  stet.ops.api_key:
    dsn_file: /etc/stet/secrets/database_url
    tenant_id: 6f1c0a52-3b8e-4e57-9a55-1d2c3b4a5f60
    name: health-check
    token_file: /etc/stet/keys/health-check.token
    state: rotated

- name: Create a key for a partner and hand the token over without logging it
  stet.ops.api_key:
    dsn_file: /etc/stet/secrets/database_url
    tenant_id: 6f1c0a52-3b8e-4e57-9a55-1d2c3b4a5f60
    name: partner-billing
  register: partner_key
  no_log: true

- name: Revoke it
  stet.ops.api_key:
    dsn_file: /etc/stet/secrets/database_url
    tenant_id: 6f1c0a52-3b8e-4e57-9a55-1d2c3b4a5f60
    name: partner-billing
    state: absent
"""

RETURN = r"""
key_id:
  description: Id of the tenant's active key of that name after the run; null when none.
  returned: always
  type: str
  sample: 0b7c3f0e-9a4d-4c1e-8f55-2a9d6e1b7c30
revoked_key_id:
  description: Id of the key this run revoked (or, in check mode, would revoke).
  returned: when a key was revoked
  type: str
token:
  description:
    - The new token. A secret - register it in a task with C(no_log=true).
    - Never returned when O(token_file) is set, nor in check mode.
  returned: when a key was created or rotated without O(token_file)
  type: str
token_file:
  description: The file that holds the token.
  returned: when O(token_file) is set
  type: str
"""

import os
import uuid

from ansible_collections.stet.ops.plugins.module_utils.api_tokens import new_token, token_matches
from ansible_collections.stet.ops.plugins.module_utils.postgres import connect, postgres_module, psycopg2
from ansible_collections.stet.ops.plugins.module_utils.secret_file import (
    SecretFileError,
    read_secret_file,
    write_secret_file,
)

FIND_ACTIVE = (
    "SELECT key_id, secret_hash FROM api_keys "
    "WHERE tenant_id = %s AND name = %s AND revoked_at IS NULL FOR UPDATE"
)
REVOKE = "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL"
CREATE = "INSERT INTO api_keys (key_id, tenant_id, name, secret_hash) VALUES (%s, %s, %s, %s)"


def token_file_holds(path, key_id, secret_hash):
    try:
        return token_matches(read_secret_file(path, "token_file"), key_id, secret_hash)
    except SecretFileError:
        return False


def decide(module, active):
    """Return (revoke, create) for the active key row (or None) and the requested state."""
    state, token_file = module.params["state"], module.params["token_file"]
    if state == "rotated":
        return active is not None, True
    if state == "absent":
        return active is not None, False
    if active is None:
        return False, True
    if token_file and not token_file_holds(token_file, *active):
        module.fail_json(
            msg=(
                f"the tenant already has an active key named {module.params['name']!r}, but {token_file} "
                "does not hold its token; use state=rotated to issue a new token (revoking the old one)"
            ),
            key_id=str(active[0]),
        )
    return False, False


def manage(module, connection, tenant_id):
    params = module.params
    token_file = params["token_file"]
    result = dict(changed=False, key_id=None)
    if token_file:
        result["token_file"] = token_file
    with connection.cursor() as cursor:
        cursor.execute(FIND_ACTIVE, (tenant_id, params["name"]))
        active = cursor.fetchone()
        revoke, create = decide(module, active)
        before = str(active[0]) if active else None
        result["key_id"] = before
        removes_file = params["state"] == "absent" and bool(token_file) and os.path.exists(token_file)
        result["changed"] = revoke or create or removes_file
        if revoke:
            result["revoked_key_id"] = before
            result["key_id"] = None
        if module.check_mode:
            after = "active key: (new)\n" if create else ""
            result["diff"] = dict(before=f"active key: {before}\n", after=after)
            return result
        if revoke:
            cursor.execute(REVOKE, (active[0],))
        if create:
            key_id, token, secret_hash = new_token()
            cursor.execute(CREATE, (str(key_id), tenant_id, params["name"], secret_hash))
            result["key_id"] = str(key_id)
            # Written before the commit: if the file cannot be written, no key exists whose token is lost.
            if token_file:
                write_secret_file(token_file, token)
            else:
                result["token"] = token
        if removes_file:
            os.unlink(token_file)
    connection.commit()
    result["diff"] = dict(before=f"active key: {before}\n", after=f"active key: {result['key_id']}\n")
    return result


def main():
    module = postgres_module(
        tenant_id=dict(type="str", required=True),
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "rotated", "absent"], default="present"),
        token_file=dict(type="path"),
    )
    try:
        tenant_id = str(uuid.UUID(module.params["tenant_id"]))
    except ValueError:
        module.fail_json(msg=f"tenant_id {module.params['tenant_id']!r} is not a UUID")
    token_file = module.params["token_file"]
    if token_file and not os.path.isdir(os.path.dirname(os.path.abspath(token_file))):
        module.fail_json(msg=f"the directory of token_file {token_file} does not exist")
    connection = connect(module)
    try:
        module.exit_json(**manage(module, connection, tenant_id))
    except psycopg2.errors.UndefinedTable:
        module.fail_json(msg="table api_keys does not exist: apply the API's migrations first")
    except psycopg2.Error as exc:
        module.fail_json(msg=f"PostgreSQL error while managing the key: {str(exc).strip()}")
    except OSError as exc:
        module.fail_json(
            msg=f"cannot write or remove token_file {token_file}: {exc.strerror}; the database is unchanged"
        )
    finally:
        connection.close()


if __name__ == "__main__":
    main()
