import re

import pytest
from ansible_collections.stet.ops.plugins.module_utils.sql_statements import (
    SqlSplitError,
    Statement,
    split_statements,
    unwrap_transaction,
)


def texts(sql):
    return [statement.text for statement in split_statements(sql)]


def test_splits_on_semicolons_and_drops_empty_and_comment_only_statements():
    sql = "CREATE TABLE a (id int);\n\n-- just a comment;\n;\nCREATE TABLE b (id int)\n"
    assert split_statements(sql) == [
        Statement(1, "CREATE TABLE a (id int)"),
        Statement(5, "CREATE TABLE b (id int)"),
    ]


def test_semicolons_inside_literals_identifiers_and_comments_do_not_split():
    sql = (
        "INSERT INTO t VALUES ('a;b', 'it''s; fine', E'back\\'; slash');\n"
        'CREATE TABLE "odd;name" (x int); /* a; /* nested; */ still comment; */ SELECT 1;'
    )
    assert texts(sql) == [
        "INSERT INTO t VALUES ('a;b', 'it''s; fine', E'back\\'; slash')",
        'CREATE TABLE "odd;name" (x int)',
        "SELECT 1",
    ]


def test_dollar_quoted_bodies_are_one_statement():
    sql = (
        "DO $$\nBEGIN\n  PERFORM 1; PERFORM 2;\nEND\n$$;\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN 1; END $body$;\n"
        "SELECT $1;"
    )
    assert texts(sql) == [
        "DO $$\nBEGIN\n  PERFORM 1; PERFORM 2;\nEND\n$$",
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$ BEGIN RETURN 1; END $body$",
        "SELECT $1",
    ]


def test_line_numbers_point_at_the_first_code_line_of_each_statement():
    sql = "-- header\n\nSELECT 1;\n/* doc */\n\nSELECT\n  2;"
    assert [statement.line for statement in split_statements(sql)] == [3, 6]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT 'open", "unterminated '...' literal opened at line 1"),
        ("SELECT 1;\nDO $x$ BEGIN", "unterminated $x$ body opened at line 2"),
        ("/* never closed", "unterminated /* comment opened at line 1"),
    ],
)
def test_unterminated_constructs_are_reported_with_their_line(sql, message):
    with pytest.raises(SqlSplitError, match=re.escape(message)):
        split_statements(sql)


def test_a_begin_commit_wrapper_is_dropped():
    statements = split_statements("BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n")
    assert [s.text for s in unwrap_transaction(statements)] == ["CREATE TABLE a (id int)"]


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE a (id int);\nCOMMIT;\nCREATE TABLE b (id int);",
        "BEGIN;\nCREATE TABLE a (id int);\nROLLBACK;",
        "CREATE TABLE a (id int);\nSTART TRANSACTION;\nSELECT 1;",
    ],
)
def test_other_transaction_control_is_refused(sql):
    with pytest.raises(SqlSplitError, match=r"^line [0-9]+: transaction control"):
        unwrap_transaction(split_statements(sql))
