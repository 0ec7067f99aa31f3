"""Connection wrappers of the template store: sqlite3 and psycopg in autocommit mode with explicit
BEGIN / COMMIT / ROLLBACK, so every transaction is the store's own (numpy stack, no torch)."""
from __future__ import annotations

import sqlite3


class _SqliteConn:
    """sqlite3 in autocommit mode with explicit BEGIN/COMMIT/ROLLBACK (so transactions are ours)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._c = conn

    def execute(self, sql: str, params: tuple = ()):
        return self._c.execute(sql, params)

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        self._c.executemany(sql, rows)

    def executescript(self, sql: str) -> None:
        for statement in sql.split(";"):
            if statement.strip():
                self._c.execute(statement)

    def commit(self) -> None:
        if self._c.in_transaction:
            self._c.execute("COMMIT")

    def rollback(self) -> None:
        if self._c.in_transaction:
            self._c.execute("ROLLBACK")

    def close(self) -> None:
        self._c.close()


class _PgConn:
    """psycopg in autocommit mode with explicit BEGIN/COMMIT/ROLLBACK: reads never leave a transaction open."""

    def __init__(self, conn) -> None:
        self._c = conn

    def execute(self, sql: str, params: tuple = ()):
        return self._c.execute(sql, params)

    def executemany(self, sql: str, rows: list[tuple]) -> None:
        with self._c.cursor() as cur:
            cur.executemany(sql, rows)

    def _in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self._c.info.transaction_status != TransactionStatus.IDLE

    def commit(self) -> None:
        if self._in_transaction():
            self._c.execute("COMMIT")

    def rollback(self) -> None:
        if self._in_transaction():
            self._c.execute("ROLLBACK")

    def close(self) -> None:
        self._c.close()
