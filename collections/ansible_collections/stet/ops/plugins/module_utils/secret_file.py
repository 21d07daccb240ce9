# Copyright: STET Ops contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Reading and writing one-line secret files (DSNs, API keys) on the managed host."""

from __future__ import annotations

import os
import tempfile


class SecretFileError(Exception):
    """A secret file is missing, unreadable or empty; the message never holds its content."""


def read_secret_file(path, what):
    """Return the stripped content of ``path``; ``what`` (the option's name) starts every error."""
    try:
        with open(path, encoding="utf-8") as handle:
            content = handle.read().strip()
    except FileNotFoundError:
        raise SecretFileError(f"{what} {path} does not exist") from None
    except PermissionError:
        raise SecretFileError(f"{what} {path} is not readable by this user") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretFileError(f"{what} {path} cannot be read: {exc.__class__.__name__}") from None
    if not content:
        raise SecretFileError(f"{what} {path} is empty")
    return content


def write_secret_file(path, content):
    """Atomically replace ``path`` with ``content`` and a newline, mode 0600 from the first byte."""
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".stet-secret-")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content + "\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
