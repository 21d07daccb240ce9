"""stet.ops.scram_sha256_verifier without a server: format, reuse, refusals.
That PostgreSQL accepts and makes the same verifiers is proven in the integration tests."""

from __future__ import annotations

import base64

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.stet.ops.plugins.filter.scram_sha256_verifier import VERIFIER, scram_sha256_verifier


def test_a_new_verifier_has_postgresqls_format_and_a_16_byte_salt():
    match = VERIFIER.match(scram_sha256_verifier("correct horse"))
    assert match
    assert match.group(1) == "4096"
    assert len(base64.b64decode(match.group(2))) == 16
    assert len(base64.b64decode(match.group(3))) == len(base64.b64decode(match.group(4))) == 32


def test_the_current_verifier_of_the_same_password_is_kept():
    current = scram_sha256_verifier("correct horse")
    assert scram_sha256_verifier("correct horse", current) == current


def test_a_changed_password_gets_a_new_salt():
    current = scram_sha256_verifier("correct horse")
    changed = scram_sha256_verifier("battery staple", current)
    assert VERIFIER.match(changed).group(2) != VERIFIER.match(current).group(2)


@pytest.mark.parametrize("current", [None, "", "md5" + "0" * 32, "SCRAM-SHA-256$garbage"])
def test_anything_but_a_verifier_as_current_gets_a_new_one(current):
    assert VERIFIER.match(scram_sha256_verifier("correct horse", current))


def test_saslprep_maps_what_postgresql_maps():
    # A soft hyphen maps to nothing and a non-ASCII space to a space (RFC 4013).
    current = scram_sha256_verifier("I\u00adX\u2003y")
    assert scram_sha256_verifier("IX y", current) == current


@pytest.mark.parametrize("password", ["", None, 42])
def test_no_password_is_refused(password):
    with pytest.raises(AnsibleFilterError, match="non-empty string"):
        scram_sha256_verifier(password)
