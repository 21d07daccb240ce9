import hashlib
import re

import pytest
from ansible_collections.stet.ops.plugins.module_utils.api_tokens import (
    SCOPES,
    canonical_scopes,
    new_token,
    token_matches,
)


def test_new_token_has_the_documented_format_and_hash():
    key_id, token, secret_hash = new_token()
    match = re.fullmatch(r"stet_([0-9a-f]{32})_([A-Za-z0-9_-]{43,})", token)
    assert match and match[1] == key_id.hex
    assert secret_hash == hashlib.sha256(match[2].encode()).hexdigest()


def test_token_matches_only_its_own_key_and_secret():
    key_id, token, secret_hash = new_token()
    other_id, other_token, other_hash = new_token()
    assert token_matches(token, key_id, secret_hash)
    assert token_matches(token, str(key_id), secret_hash)
    assert not token_matches(token, other_id, secret_hash)
    assert not token_matches(token, key_id, other_hash)
    assert not token_matches(other_token, key_id, secret_hash)
    assert not token_matches("not a token", key_id, secret_hash)


def test_canonical_scopes_orders_and_deduplicates():
    assert canonical_scopes(["admin", "read", "read"]) == ["read", "admin"]
    assert canonical_scopes(list(SCOPES)) == ["read", "write", "enforce", "admin"]


def test_canonical_scopes_refuses_unknown_and_empty_lists():
    with pytest.raises(ValueError, match="unknown scopes delete, root"):
        canonical_scopes(["read", "root", "delete"])
    with pytest.raises(ValueError, match="at least one"):
        canonical_scopes([])
