# Copyright: STET Ops contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
# Plugins open with their documentation strings, so imports come after them.
# ruff: noqa: E402
"""The scram_sha256_verifier filter: a password as PostgreSQL stores it, computed here."""

from __future__ import annotations

DOCUMENTATION = r"""
name: scram_sha256_verifier
short_description: A PostgreSQL SCRAM-SHA-256 verifier for a password
version_added: 1.1.0
description:
  - Computes the verifier PostgreSQL keeps in C(pg_authid.rolpassword) for a password
    (C(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)), so that
    C(CREATE ROLE ... PASSWORD) or C(community.postgresql.postgresql_user) sends the verifier,
    never the password, and the server's statement log (C(log_statement=ddl)) never holds it.
  - When O(current) is a verifier of the same password, it is returned unchanged (same salt),
    so a re-run changes nothing; otherwise a new verifier with a random 16-byte salt.
  - The password is prepared with SASLprep as PostgreSQL does (and used as it is when SASLprep
    refuses it, as PostgreSQL also does).
options:
  _input:
    description: The password.
    type: string
    required: true
  current:
    description: The role's current C(rolpassword), if any (C(None) or another format is ignored).
    type: string
  iterations:
    description: PBKDF2 iterations of a new verifier (PostgreSQL's C(scram_iterations) default).
    type: integer
    default: 4096
"""

EXAMPLES = r"""
- name: Read the role's current verifier
  community.postgresql.postgresql_query:
    query: SELECT rolpassword FROM pg_authid WHERE rolname = %s
    positional_args: [stet]
  register: current
  no_log: true

- name: Create the role with a verifier, never the password
  community.postgresql.postgresql_user:
    name: stet
    password: "{{ password | stet.ops.scram_sha256_verifier(current_verifier) }}"
  vars:
    current_verifier: "{{ current.query_result[0].rolpassword | default(none) }}"
  no_log: true
"""

RETURN = r"""
_value:
  description: The verifier, C(SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>).
  type: string
"""

import base64
import hashlib
import hmac
import os
import re
import stringprep
import unicodedata

from ansible.errors import AnsibleFilterError

VERIFIER = re.compile(r"^SCRAM-SHA-256\$(\d+):([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+):([A-Za-z0-9+/=]+)$")
SALT_BYTES = 16

# RFC 4013 (SASLprep) prohibited output: RFC 3454 tables C.1.2 and C.2.1 to C.9.
_PROHIBITED = (
    stringprep.in_table_c12,
    stringprep.in_table_c21_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def _saslprep(password: str) -> bytes:
    """The bytes PostgreSQL hashes: SASLprep'd UTF-8, or the raw UTF-8 when SASLprep fails
    (prohibited or unassigned characters, bad bidirectional text)."""
    raw = password.encode("utf-8")
    if password.isascii() and all(0x20 <= ord(char) < 0x7F for char in password):
        return raw  # printable ASCII is its own SASLprep
    mapped = "".join(
        " " if stringprep.in_table_c12(char) else char
        for char in password
        if not stringprep.in_table_b1(char)
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    if not prepared or any(check(char) for char in prepared for check in _PROHIBITED):
        return raw
    if any(stringprep.in_table_a1(char) for char in prepared):
        return raw
    if any(stringprep.in_table_d1(char) for char in prepared):
        if any(stringprep.in_table_d2(char) for char in prepared):
            return raw
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            return raw
    return prepared.encode("utf-8")


def _keys(password: bytes, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return hashlib.sha256(client_key).digest(), server_key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def scram_sha256_verifier(password, current=None, iterations=4096):
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("scram_sha256_verifier: the password must be a non-empty string")
    if not isinstance(iterations, int) or iterations < 1:
        raise AnsibleFilterError("scram_sha256_verifier: iterations must be a positive integer")
    prepared = _saslprep(password)
    match = VERIFIER.match(current) if isinstance(current, str) else None
    if match:
        salt = base64.b64decode(match.group(2))
        stored_key, server_key = _keys(prepared, salt, int(match.group(1)))
        if hmac.compare_digest(_b64(stored_key), match.group(3)) and hmac.compare_digest(
            _b64(server_key), match.group(4)
        ):
            return current
    salt = os.urandom(SALT_BYTES)
    stored_key, server_key = _keys(prepared, salt, iterations)
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


class FilterModule:
    def filters(self):
        return {"scram_sha256_verifier": scram_sha256_verifier}
