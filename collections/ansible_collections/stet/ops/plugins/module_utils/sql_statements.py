# Copyright: STET Ops contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)
"""Splits a migration file into statements, so a failure can name the statement that failed.

Understands what PostgreSQL's own lexer treats as opaque: '...' strings (with '' and, in
E'...' strings, backslash escapes), "quoted identifiers", -- line comments, nested /* */
comments and $tag$ dollar-quoted bodies (DO blocks, functions).
"""

from __future__ import annotations

import re

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_TRANSACTION_START = re.compile(r"(?is)^(begin|start\s+transaction)\b")
_TRANSACTION_END = re.compile(r"(?is)^(commit|end)(\s+(work|transaction))?\s*$")
_TRANSACTION_OTHER = re.compile(r"(?is)^(rollback|abort|commit\s+prepared|prepare\s+transaction)\b")


class SqlSplitError(Exception):
    """The file cannot be split or cannot run inside the module's own transaction."""


class Statement:
    def __init__(self, line, text):
        self.line = line
        self.text = text

    def __eq__(self, other):
        return isinstance(other, Statement) and (self.line, self.text) == (other.line, other.text)

    def __repr__(self):
        return f"Statement(line={self.line}, text={self.text!r})"


def _is_identifier_char(char):
    return char.isalnum() or char in "_$"


def _skip_quoted(text, start, quote, backslash_escapes):
    """Return the index just past the closing ``quote`` of the literal opened at ``start``."""
    index = start + 1
    while index < len(text):
        char = text[index]
        if backslash_escapes and char == "\\":
            index += 2
            continue
        if char == quote:
            if text.startswith(quote, index + 1):
                index += 2
                continue
            return index + 1
        index += 1
    raise SqlSplitError(f"unterminated {quote}...{quote} literal opened at line {_line_of(text, start)}")


def _skip_block_comment(text, start):
    depth, index = 0, start
    while index < len(text):
        if text.startswith("/*", index):
            depth, index = depth + 1, index + 2
        elif text.startswith("*/", index):
            depth, index = depth - 1, index + 2
            if depth == 0:
                return index
        else:
            index += 1
    raise SqlSplitError(f"unterminated /* comment opened at line {_line_of(text, start)}")


def _line_of(text, index):
    return text.count("\n", 0, index) + 1


def split_statements(text):
    """Return the list of Statement (1-based start line, text without the final ';')."""
    statements = []
    code_start = None  # index of the first character of the current statement that is not a comment
    index = 0

    def close(end):
        if code_start is not None:
            statements.append(Statement(_line_of(text, code_start), text[code_start:end].strip()))

    while index < len(text):
        char = text[index]
        if text.startswith("--", index):
            newline = text.find("\n", index)
            index = len(text) if newline == -1 else newline + 1
            continue
        if text.startswith("/*", index):
            index = _skip_block_comment(text, index)
            continue
        if char == ";":
            close(index)
            code_start = None
            index += 1
            continue
        if char.isspace():
            index += 1
            continue
        if code_start is None:
            code_start = index
        previous = text[index - 1] if index else ""
        if char == "'":
            escaped = previous in "eE" and (index < 2 or not _is_identifier_char(text[index - 2]))
            index = _skip_quoted(text, index, "'", escaped)
        elif char == '"':
            index = _skip_quoted(text, index, '"', False)
        elif char == "$" and not _is_identifier_char(previous) and (tag := _DOLLAR_TAG.match(text, index)):
            closing = text.find(tag.group(0), tag.end())
            if closing == -1:
                opened_at = _line_of(text, index)
                raise SqlSplitError(f"unterminated {tag.group(0)} body opened at line {opened_at}")
            index = closing + len(tag.group(0))
        else:
            index += 1
    close(len(text))
    return statements


def unwrap_transaction(statements):
    """Drop a BEGIN ... COMMIT pair wrapping the whole file; refuse any other transaction control.

    The module runs each file in its own transaction and records it in the ledger before
    committing, so a COMMIT inside the file would break that atomicity.
    """
    if (
        len(statements) >= 2
        and _TRANSACTION_START.match(statements[0].text)
        and _TRANSACTION_END.match(statements[-1].text)
    ):
        statements = statements[1:-1]
    for statement in statements:
        text = statement.text
        if _TRANSACTION_START.match(text) or _TRANSACTION_END.match(text) or _TRANSACTION_OTHER.match(text):
            raise SqlSplitError(
                f"line {statement.line}: transaction control ({text.split()[0].upper()}) is not "
                "allowed inside a migration; each file already runs in its own transaction"
            )
    return statements
