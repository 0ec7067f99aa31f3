"""TemplateStore: the durable truth of enrolled templates (numpy only; SQLite by default, PostgreSQL to scale).

A template row: subject, modality, packed codes, code length, model fingerprint, protection key id, created
time (and an image only when asked). Every enroll is one transaction; every insert and delete also appends
to a change log whose sequence number is the change counter a Matcher catches up from. Schema changes are
numbered migrations recorded in schema_migrations. A store is bound to one model (fingerprint and code
length, set at the first enroll or at creation): codes from another model are refused.

    store = open_store("sqlite:///templates.db")            # or a path, or postgresql://user@host/db
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from biohash.errors import BiohashError
from biohash.match.types import Codes, Template
from biohash.serve.store_conn import _PgConn, _SqliteConn

PAGE = 5_000  # rows per catch-up read and ids per IN (...) list


class StoreError(BiohashError):
    """A template could not be stored or read: wrong model, wrong code length, unknown subject."""


# (version, sqlite script, postgresql script)
MIGRATIONS: list[tuple[int, str, str]] = [
    (1,
     """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE templates (id INTEGER PRIMARY KEY AUTOINCREMENT, subject TEXT NOT NULL,
            modality TEXT NOT NULL, codes BLOB NOT NULL, n_bits INTEGER NOT NULL, fingerprint TEXT NOT NULL,
            key_id TEXT, created REAL NOT NULL, image BLOB);
        CREATE INDEX templates_subject ON templates (subject);
        CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL,
            template_id INTEGER NOT NULL, at REAL NOT NULL);""",
     """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE templates (id BIGSERIAL PRIMARY KEY, subject TEXT NOT NULL, modality TEXT NOT NULL,
            codes BYTEA NOT NULL, n_bits INTEGER NOT NULL, fingerprint TEXT NOT NULL, key_id TEXT,
            created DOUBLE PRECISION NOT NULL, image BYTEA);
        CREATE INDEX templates_subject ON templates (subject);
        CREATE TABLE changes (seq BIGSERIAL PRIMARY KEY, op TEXT NOT NULL, template_id BIGINT NOT NULL,
            at DOUBLE PRECISION NOT NULL);"""),
    (2,
     "CREATE INDEX templates_modality ON templates (modality);",
     "CREATE INDEX templates_modality ON templates (modality);"),
]


@dataclass(frozen=True)
class Changes:
    """What happened after a change counter: templates added and template ids removed. `complete` is False
    when a page limit cut the list: ask again from `seq` for the rest."""

    seq: int
    added: list[Template]
    removed: list[int]
    complete: bool = True


class TemplateStore:
    """SQL template store; use open_store() to get one. Thread-unsafe: one store object per thread/process."""

    dialect = "sqlite"

    def __init__(self, conn, n_bits: int | None = None, fingerprint: str | None = None,
                 encoder: str | None = None) -> None:
        self.conn = conn
        self._migrate()
        if n_bits is not None or fingerprint is not None or encoder is not None:
            self._bind(n_bits, fingerprint, encoder)

    # --- dialect hooks -------------------------------------------------------------------------------
    def _q(self, sql: str) -> str:
        return sql

    def _script(self, sqlite_sql: str, pg_sql: str) -> None:
        self.conn.executescript(sqlite_sql)

    def _begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")  # take the write lock now: concurrent writers wait, not fail

    def _insert_id(self, sql: str, params: tuple) -> int:
        return self.conn.execute(sql, params).lastrowid

    def _order_changes(self) -> None:
        """Called at the start of every write transaction, before it numbers a change: writers must commit in
        change-number order, or a reader that caught up to a later number skips an earlier one committed late.
        SQLite: BEGIN IMMEDIATE already serialises writers."""

    # --- schema ----------------------------------------------------------------------------------------
    def _exec(self, sql: str, params: tuple = ()):
        return self.conn.execute(self._q(sql), params)

    def _lock_schema(self) -> None:
        pass  # SQLite: BEGIN IMMEDIATE already holds the write lock

    def _migrate(self) -> None:
        self._begin()
        try:
            self._lock_schema()
            self._exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied REAL)")
            done = {r[0] for r in self._exec("SELECT version FROM schema_migrations").fetchall()}
            for version, lite, pg in MIGRATIONS:
                if version not in done:
                    self._script(lite, pg)
                    self._exec("INSERT INTO schema_migrations VALUES (?, ?)", (version, time.time()))
            self.conn.commit()
        except Exception:
            self.conn.rollback()
            raise

    @property
    def schema_version(self) -> int:
        return int(self._exec("SELECT MAX(version) FROM schema_migrations").fetchone()[0])

    def _meta(self, key: str) -> str | None:
        row = self._exec("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _bind(self, n_bits: int | None, fingerprint: str | None, encoder: str | None = None) -> None:
        """Bind the store to a model (and an encoder family: float or int8 codes differ), or check it matches
        the one it is bound to."""
        for key, value in (("n_bits", n_bits), ("fingerprint", fingerprint), ("encoder", encoder)):
            if value is None:
                continue
            have = self._meta(key)
            if have is None:
                self._begin()
                self._exec("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, str(value)))
                self.conn.commit()
                have = self._meta(key)
            if have != str(value) and key == "encoder":
                raise StoreError(f"this store holds codes of the {have} encoder, not {value}: int8 and float codes "
                                 f"of one model differ; deploy with the {have} back-end, or a new store")
            if have != str(value):
                raise StoreError(f"this store holds templates of {key} {have}, not {value}: codes from another "
                                 f"model or code length cannot be compared; use a new store or re-enroll")

    @property
    def n_bits(self) -> int | None:
        v = self._meta("n_bits")
        return int(v) if v is not None else None

    @property
    def fingerprint(self) -> str | None:
        return self._meta("fingerprint")

    # --- writes ----------------------------------------------------------------------------------------
    def enroll(self, subject: str, codes: dict[str, Codes], fingerprint: str, key_id: str | None = None,
               images: dict[str, bytes] | None = None) -> list[int]:
        """Store one template per modality for `subject` in one transaction; returns their template ids.
        When this returns, the templates are durable."""
        if not subject or not isinstance(subject, str):
            raise StoreError("a subject id must be a non-empty string")
        if not codes:
            raise StoreError("nothing to enroll: no codes given")
        for m, c in codes.items():
            if not isinstance(c, Codes) or len(c) != 1:
                raise StoreError(f"enroll takes one code per modality; got {len(c) if isinstance(c, Codes) else c!r} "
                                 f"for {m!r}")
        n_bits = {c.n_bits for c in codes.values()}
        if len(n_bits) != 1:
            raise StoreError(f"all modalities of one model have one code length, got {sorted(n_bits)}")
        self._bind(n_bits.pop(), fingerprint)
        now = time.time()
        self._begin()
        try:
            self._order_changes()
            ids = []
            for m, c in codes.items():
                image = (images or {}).get(m)
                tid = self._insert_id(self._q(
                    "INSERT INTO templates (subject, modality, codes, n_bits, fingerprint, key_id, created, image) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"), (subject, m, c.bits[0].tobytes(), c.n_bits, fingerprint,
                                                         key_id, now, image))
                self._exec("INSERT INTO changes (op, template_id, at) VALUES ('add', ?, ?)", (tid, now))
                ids.append(int(tid))
            self.conn.commit()
        except Exception:
            self.conn.rollback()
            raise
        return ids

    def enroll_batch(self, rows: list[tuple[str, str, bytes]], n_bits: int, fingerprint: str,
                     key_id: str | None = None) -> int:
        """Bulk import of (subject, modality, packed code bytes) rows in one transaction (migrations, benchmarks);
        returns how many were stored."""
        if any(len(code) * 8 != n_bits for _, _, code in rows):
            raise StoreError(f"every code of a batch must have {n_bits} bits")
        self._bind(n_bits, fingerprint)
        now = time.time()
        self._begin()
        try:
            self._order_changes()  # also keeps other writers out: the new ids are exactly those above `before`
            before = int(self._exec("SELECT COALESCE(MAX(id), 0) FROM templates").fetchone()[0])
            self.conn.executemany(self._q(
                "INSERT INTO templates (subject, modality, codes, n_bits, fingerprint, key_id, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)"), [(s, m, code, n_bits, fingerprint, key_id, now) for s, m, code in rows])
            self._exec("INSERT INTO changes (op, template_id, at) SELECT 'add', id, ? FROM templates WHERE id > ? "
                       "ORDER BY id", (now, before))
            self.conn.commit()
        except Exception:
            self.conn.rollback()
            raise
        return len(rows)

    def delete(self, subject: str) -> int:
        """Remove every template of `subject` (one transaction); returns how many."""
        self._begin()
        try:
            self._order_changes()
            ids = [r[0] for r in self._exec("SELECT id FROM templates WHERE subject = ?", (subject,)).fetchall()]
            now = time.time()
            for tid in ids:
                self._exec("INSERT INTO changes (op, template_id, at) VALUES ('remove', ?, ?)", (tid, now))
            self._exec("DELETE FROM templates WHERE subject = ?", (subject,))
            self.conn.commit()
        except Exception:
            self.conn.rollback()
            raise
        return len(ids)

    # --- reads -----------------------------------------------------------------------------------------
    def count(self, modality: str | None = None) -> int:
        if modality is None:
            return int(self._exec("SELECT COUNT(*) FROM templates").fetchone()[0])
        return int(self._exec("SELECT COUNT(*) FROM templates WHERE modality = ?", (modality,)).fetchone()[0])

    def subjects(self) -> list[str]:
        return [r[0] for r in self._exec("SELECT DISTINCT subject FROM templates ORDER BY subject").fetchall()]

    def templates(self, subject: str | None = None, modality: str | None = None) -> tuple[np.ndarray, list[str], Codes | None]:
        """(template ids, subjects, Codes) of the matching rows, in id order; Codes is None when empty."""
        sql = "SELECT id, subject, codes, n_bits FROM templates WHERE 1 = 1"
        params: list[object] = []
        if subject is not None:
            sql, params = sql + " AND subject = ?", params + [subject]
        if modality is not None:
            sql, params = sql + " AND modality = ?", params + [modality]
        rows = self._exec(sql + " ORDER BY id", tuple(params)).fetchall()
        if not rows:
            return np.zeros(0, np.int64), [], None
        codes = Codes(np.frombuffer(b"".join(bytes(r[2]) for r in rows), np.uint8).reshape(len(rows), -1),
                      int(rows[0][3]))
        return np.array([r[0] for r in rows], np.int64), [r[1] for r in rows], codes

    def subjects_of(self, ids) -> dict[int, str]:
        ids = [int(i) for i in ids if int(i) >= 0]
        out: dict[int, str] = {}
        for start in range(0, len(ids), PAGE):  # bounded placeholders: drivers cap them (65,535 on PostgreSQL)
            chunk = ids[start : start + PAGE]
            marks = ", ".join("?" * len(chunk))
            rows = self._exec(f"SELECT id, subject FROM templates WHERE id IN ({marks})", tuple(chunk)).fetchall()
            out.update((int(r[0]), r[1]) for r in rows)
        return out

    @property
    def change_counter(self) -> int:
        return int(self._exec("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0])

    def changes_since(self, seq: int, limit: int | None = None) -> Changes:
        """Adds and removes after change `seq`, in change order, for a Matcher to catch up; at most `limit`
        changes (default: all, read in pages). An add whose template is already deleted is skipped (its remove
        follows)."""
        added: list[Template] = []
        removed: list[int] = []
        left = limit
        while left is None or left > 0:
            page = PAGE if left is None else min(PAGE, left)
            rows = self._exec(
                "SELECT c.seq, c.op, c.template_id, t.subject, t.modality, t.codes FROM changes c "
                "LEFT JOIN templates t ON c.op = 'add' AND t.id = c.template_id "
                "WHERE c.seq > ? ORDER BY c.seq LIMIT ?", (seq, page)).fetchall()
            for r in rows:
                if r[1] == "remove":
                    removed.append(int(r[2]))
                elif r[3] is not None:
                    added.append(Template(int(r[2]), r[3], r[4], bytes(r[5])))
            if rows:
                seq = int(rows[-1][0])
            if left is not None:
                left -= len(rows)
            if len(rows) < page:
                return Changes(seq, added, removed, True)
        return Changes(seq, added, removed, False)

    def check(self) -> None:
        """Consistency: every template has its add in the change log, codes have the bound length."""
        n = self.n_bits
        bad = self._exec("SELECT COUNT(*) FROM templates WHERE n_bits <> ?", (n or 0,)).fetchone()[0] if n else 0
        orphan = self._exec("SELECT COUNT(*) FROM templates t WHERE NOT EXISTS (SELECT 1 FROM changes c WHERE "
                            "c.template_id = t.id AND c.op = 'add')").fetchone()[0]
        if bad or orphan:
            raise StoreError(f"store inconsistent: {bad} templates of another code length, {orphan} without a "
                             f"change record")

    def close(self) -> None:
        self.conn.close()


class SqliteStore(TemplateStore):
    dialect = "sqlite"

    def check(self) -> None:
        ok = self.conn.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            raise StoreError(f"SQLite integrity check failed: {ok}")
        super().check()


class PostgresStore(TemplateStore):
    dialect = "postgresql"

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s")

    def _script(self, sqlite_sql: str, pg_sql: str) -> None:
        for statement in pg_sql.split(";"):
            if statement.strip():
                self.conn.execute(statement)

    def _begin(self) -> None:
        self.conn.execute("BEGIN")

    def _insert_id(self, sql: str, params: tuple) -> int:
        return self.conn.execute(sql + " RETURNING id", params).fetchone()[0]

    def _lock_schema(self) -> None:
        self.conn.execute("SELECT pg_advisory_xact_lock(724101)")  # one migrator at a time

    def _order_changes(self) -> None:
        # PostgreSQL numbers a change at insert, not at commit: without this lock a transaction can take number
        # 10, commit after number 11 is visible, and a reader that caught up to 11 never sees 10. Held until
        # commit, the lock makes change numbers visible in order (writes queue; reads do not wait).
        self.conn.execute("SELECT pg_advisory_xact_lock(724102)")


def open_store(url: str | Path, n_bits: int | None = None, fingerprint: str | None = None,
               encoder: str | None = None, *, create: bool = True) -> TemplateStore:
    """A store from a URL: a file path or sqlite:///PATH (SQLite, WAL), or postgresql://... (psycopg).
    create=False (commands that only read or delete) refuses a SQLite file that does not exist, where a
    mistyped path would otherwise open a new, empty store."""
    url = str(url)
    if url.startswith(("postgresql://", "postgres://")):
        try:
            import psycopg
        except ImportError:
            raise StoreError("the PostgreSQL store needs psycopg: pip install 'psycopg[binary]'") from None
        return PostgresStore(_PgConn(psycopg.connect(url, autocommit=True)), n_bits, fingerprint, encoder)
    path = Path(url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url)
    if path.parent and not path.parent.exists():
        raise StoreError(f"folder for the template store does not exist: {path.parent}")
    if not create and not path.is_file():
        raise StoreError(f"template store {path} does not exist (enroll creates it; check --store)")
    # one store object may serve several threads in turn (the service serialises them with a lock)
    conn = sqlite3.connect(str(path), timeout=30.0, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")  # an acknowledged enroll survives power loss, not just a crash
    conn.execute("PRAGMA busy_timeout=30000")
    return SqliteStore(_SqliteConn(conn), n_bits, fingerprint, encoder)
