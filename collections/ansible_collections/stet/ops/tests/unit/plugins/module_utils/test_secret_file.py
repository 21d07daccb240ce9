import os
import stat

import pytest
from ansible_collections.stet.ops.plugins.module_utils.secret_file import (
    SecretFileError,
    read_secret_file,
    write_secret_file,
)


def test_write_creates_a_0600_file_and_read_strips_it(tmp_path):
    path = tmp_path / "token"
    write_secret_file(str(path), "s3cret")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert read_secret_file(str(path), "token") == "s3cret"
    assert [p.name for p in tmp_path.iterdir()] == ["token"]


def test_write_replaces_a_wider_existing_file_with_a_0600_one(tmp_path):
    path = tmp_path / "token"
    path.write_text("old")
    path.chmod(0o644)
    write_secret_file(str(path), "new")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and path.read_text() == "new\n"


@pytest.mark.parametrize(("content", "message"), [(None, "does not exist"), ("  \n", "is empty")])
def test_read_errors_name_the_file_but_not_the_content(tmp_path, content, message):
    path = tmp_path / "dsn"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SecretFileError, match=f"dsn_file {path} {message}"):
        read_secret_file(str(path), "dsn_file")
