"""Which store errors are permanent, and which mean "the store refuses writes"."""

from __future__ import annotations

import sqlite3

import pymysql
import pytest
import sqlalchemy as sa

from telephonyd.errors import StoreDamaged, StoreError, StoreMissing
from telephonyd.store.engine import start_error_retryable
from telephonyd.store.refusal import refusal_reason


def wrapped(orig: BaseException) -> sa.exc.OperationalError:
    return sa.exc.OperationalError("INSERT ...", {}, orig)


@pytest.mark.parametrize(("orig", "retryable"), [
    (pymysql.err.OperationalError(2003, "Can't connect to MySQL server on '127.0.0.1'"), True),
    (pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"), True),
    (pymysql.err.OperationalError(1040, "Too many connections"), True),
    (pymysql.err.OperationalError(1045, "Access denied for user 'x'@'localhost'"), False),
    (pymysql.err.OperationalError(1049, "Unknown database 'nope'"), False),
])
def test_mysql_start_errors(orig: BaseException, retryable: bool) -> None:
    assert start_error_retryable("mysql", wrapped(orig)) is retryable


@pytest.mark.parametrize(("text", "retryable"), [
    ("database is locked", True),
    ("file is not a database", False),
    ("database disk image is malformed", False),
    ("attempt to write a readonly database", False),
    ("unable to open database file", False),
])
def test_sqlite_start_errors(text: str, retryable: bool) -> None:
    assert start_error_retryable("sqlite", wrapped(sqlite3.OperationalError(text))) is retryable
    assert start_error_retryable("sqlite", TimeoutError()) is True


def test_the_tree_says_what_is_permanent() -> None:
    assert StoreError("down").retryable is True
    assert StoreError("bad", retryable=False).retryable is False
    assert StoreDamaged("damaged", path="/x").retryable is False and StoreDamaged.exit_code == 78
    assert StoreMissing("none").retryable is False


@pytest.mark.parametrize(("orig", "refusing"), [
    (sqlite3.OperationalError("database or disk is full"), True),
    (sqlite3.OperationalError("attempt to write a readonly database"), True),
    (sqlite3.OperationalError("disk I/O error"), True),
    (sqlite3.OperationalError("database is locked"), False),
    (sqlite3.IntegrityError("UNIQUE constraint failed: outbox.target, outbox.key"), False),
    (pymysql.err.OperationalError(1021, "Disk full (/var/tmp/#sql_1.MAI); waiting for someone to free some space"), True),
    (pymysql.err.OperationalError(1114, "The table 'outbox' is full"), True),
    (pymysql.err.OperationalError(1290, "The MariaDB server is running with the --read-only option"), True),
    (pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"), False),
])
def test_refusals(orig: BaseException, refusing: bool) -> None:
    assert (refusal_reason(wrapped(orig)) is not None) is refusing
