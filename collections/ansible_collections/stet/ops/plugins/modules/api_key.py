#!/usr/bin/python
# Copyright: STET Ops contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# Ansible modules open with their documentation strings, so imports come after them.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: api_key
short_description: Create, rotate, scope and revoke a tenant's named STET API key
version_added: 1.0.0
description:
  - Manages one named API key of a tenant directly in the STET database (table C(api_keys)),
    the way the API checks it - the token C(stet_<key id>_<secret>) is given to the client
    once, and only the SHA-256 of the secret is stored.
  - The token exists only at creation. With O(token_file) the module writes it to a file on
    the managed host (mode 0600) and never returns it, so it never travels through Ansible
    output. Without O(token_file) the token is returned in RV(token) - give such a task
    C(no_log=true) and write the token to a 0600 file yourself.
  - V(present) is idempotent - an active key of that name is left alone, except that its
    scopes are set to O(scopes) when given. When O(token_file) is set, that file must hold
    the active key's valid token, otherwise the task fails rather than silently replacing
    a key other clients may use.
author:
  - STET Ops team (@stet-ops)
extends_documentation_fragment:
  - stet.ops.postgres
attributes:
  check_mode:
    description: Reports what would change; no key is created or revoked, no file written.
    support: full
  diff_mode:
    description: Shows the active key id and its scopes before and after.
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
  scopes:
    description:
      - What the key may do. V(read) - facts, history, enforcement status and escalation,
        the list of expected systems. V(write) - corrections and revoke. V(enforce) -
        heartbeats only. V(admin) - register and remove expected systems.
      - A request outside the key's scopes gets 403 C(MISSING_SCOPE) from the API. A change
        reaches every API process within its key cache period (10 s by default).
      - When set, a new key gets exactly these and an existing key's scopes are changed to
        them (the token stays the same). When omitted, a new key gets every scope (the
        database default, which keys made before scopes existed also have), an existing
        key keeps its scopes, and V(rotated) gives the new key the old key's scopes.
      - Give each key the least it needs, for example V([read]) for a health check and
        V([enforce]) for an enforcing system.
    type: list
    elements: str
    choices: [read, write, enforce, admin]
  token_file:
    description:
      - Path, on the managed host, where a new token is written (mode 0600, owned by the
        connecting user; set its owner afterwards with M(ansible.builtin.file)).
      - Its directory must exist.
    type: path
notes:
  - Requires the C(api_keys) table, created by the API's migrations (M(stet.ops.migrate));
    O(scopes) requires migration 011.
"""

EXAMPLES = r"""
- name: Give the health-check job a read-only key, written to a file only root can read
  stet.ops.api_key:
    dsn_file: /etc/stet/secrets/database_url
    tenant_id: 6f1c0a52-3b8e-4e57-9a55-1d2c3b4a5f60
    name: health-check
    token_file: /etc/stet/keys/health-check.token
    scopes: [read]

- name: Let an enforcing system send heartbeats and nothing else
  stet.ops.api_key:
    dsn_file: /etc/stet/secrets/database_url
    tenant_id: 6f1c0a52-3b8e-4e57-9a55-1d2c3b4a5f60
    name: enforcer-billing
    scopes: [enforce]
    token_file: /etc/stet/keys/enforcer-billing.token

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
scopes:
  description:
    - Scopes of the tenant's active key of that name after the run; empty when none.
    - In check mode, what they would be.
  returned: always
  type: list
  elements: str
  sample: [read]
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

from ansible_collections.stet.ops.plugins.module_utils.api_tokens import (
    SCOPES,
    canonical_scopes,
    new_token,
    token_matches,
)
from ansible_collections.stet.ops.plugins.module_utils.postgres import connect, postgres_module, psycopg2
from ansible_collections.stet.ops.plugins.module_utils.secret_file import (
    SecretFileError,
    read_secret_file,
    write_secret_file,
)

# to_jsonb(row)->'scopes' reads null rather than failing on a schema before migration 011.
FIND_ACTIVE = (
    "SELECT key_id, secret_hash, to_jsonb(api_keys) -> 'scopes' FROM api_keys "
    "WHERE tenant_id = %s AND name = %s AND revoked_at IS NULL FOR UPDATE"
)
REVOKE = "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL"
CREATE = "INSERT INTO api_keys (key_id, tenant_id, name, secret_hash) VALUES (%s, %s, %s, %s)"
CREATE_SCOPED = (
    "INSERT INTO api_keys (key_id, tenant_id, name, secret_hash, scopes) VALUES (%s, %s, %s, %s, %s)"
)
SET_SCOPES = "UPDATE api_keys SET scopes = %s WHERE key_id = %s"


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
    if token_file and not token_file_holds(token_file, active[0], active[1]):
        module.fail_json(
            msg=(
                f"the tenant already has an active key named {module.params['name']!r}, but {token_file} "
                "does not hold its token; use state=rotated to issue a new token (revoking the old one)"
            ),
            key_id=str(active[0]),
        )
    return False, False


def scopes_after(wanted, active, revoke, create):
    """The active key's scopes after the run ([] when none; None: the database default)."""
    if create:
        return wanted if wanted is not None else (active[2] if active else None)
    if active is None or revoke:
        return []
    return wanted if wanted is not None else active[2]


def describe(key_id, scopes):
    if not key_id:
        return "active key: None\n"
    shown = ", ".join(SCOPES) + " (default)" if scopes is None else ", ".join(scopes)
    return f"active key: {key_id}\nscopes: {shown}\n"


def manage(module, connection, tenant_id, wanted):
    params = module.params
    token_file = params["token_file"]
    result = dict(changed=False, key_id=None)
    if token_file:
        result["token_file"] = token_file
    with connection.cursor() as cursor:
        cursor.execute(FIND_ACTIVE, (tenant_id, params["name"]))
        active = cursor.fetchone()
        if wanted is not None and params["state"] != "absent" and not scopes_column_exists(cursor):
            module.fail_json(msg="table api_keys has no scopes column: apply the API's migration 011 first")
        revoke, create = decide(module, active)
        before = str(active[0]) if active else None
        before_scopes = active[2] if active else []
        scopes = scopes_after(wanted, active, revoke, create)
        rescope = not (revoke or create) and active is not None and scopes != before_scopes
        result["key_id"] = before
        removes_file = params["state"] == "absent" and bool(token_file) and os.path.exists(token_file)
        result["changed"] = revoke or create or rescope or removes_file
        result["scopes"] = list(SCOPES) if scopes is None else scopes
        if revoke:
            result["revoked_key_id"] = before
            result["key_id"] = None
        if module.check_mode:
            after_id = "(new)" if create else result["key_id"]
            result["diff"] = dict(before=describe(before, before_scopes), after=describe(after_id, scopes))
            return result
        if revoke:
            cursor.execute(REVOKE, (active[0],))
        if rescope:
            cursor.execute(SET_SCOPES, (scopes, active[0]))
        if create:
            key_id, token, secret_hash = new_token()
            row = (str(key_id), tenant_id, params["name"], secret_hash)
            if scopes is None:
                cursor.execute(CREATE, row)
            else:
                cursor.execute(CREATE_SCOPED, (*row, scopes))
            result["key_id"] = str(key_id)
            # Written before the commit: if the file cannot be written, no key exists whose token is lost.
            if token_file:
                write_secret_file(token_file, token)
            else:
                result["token"] = token
        if removes_file:
            os.unlink(token_file)
    connection.commit()
    result["diff"] = dict(before=describe(before, before_scopes), after=describe(result["key_id"], scopes))
    return result


def scopes_column_exists(cursor):
    cursor.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_name = 'api_keys' AND column_name = 'scopes'"
        " AND table_schema = ANY(current_schemas(false))"
    )
    return cursor.fetchone() is not None


def main():
    module = postgres_module(
        tenant_id=dict(type="str", required=True),
        name=dict(type="str", required=True),
        state=dict(type="str", choices=["present", "rotated", "absent"], default="present"),
        token_file=dict(type="path"),
        scopes=dict(type="list", elements="str", choices=list(SCOPES)),
    )
    try:
        tenant_id = str(uuid.UUID(module.params["tenant_id"]))
    except ValueError:
        module.fail_json(msg=f"tenant_id {module.params['tenant_id']!r} is not a UUID")
    wanted = module.params["scopes"]
    if wanted is not None:
        try:
            wanted = canonical_scopes(wanted)
        except ValueError as exc:
            module.fail_json(msg=f"scopes: {exc}")
    token_file = module.params["token_file"]
    if token_file and not os.path.isdir(os.path.dirname(os.path.abspath(token_file))):
        module.fail_json(msg=f"the directory of token_file {token_file} does not exist")
    connection = connect(module)
    try:
        module.exit_json(**manage(module, connection, tenant_id, wanted))
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
