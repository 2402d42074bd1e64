"""The SQLite layout of the revision log (after kine's, adapted to one in-process writer).

Every write appends a row; nothing is updated in place except ``next_revision``, the revision
that superseded a live row. That one column turns "the state at revision R" into a plain
filtered scan (``revision <= R AND (next_revision IS NULL OR next_revision > R)``) instead of a
GROUP BY per key, which keeps lists at an old revision and pages of one snapshot cheap.

- ``kv``: one row per version. The primary key (name, revision) clusters each key's versions
  together, so point reads and prefix ranges walk the table itself. A deletion is a row with
  ``deleted = 1`` that keeps the last value (a DELETE event carries it). ``prev_revision`` is
  the version this row replaced (0 when the key did not exist), which compaction follows to
  find superseded rows without scanning the whole table.
- ``kv_by_revision``: the log order, for watch replay and compaction.
- ``meta``: ``compact_rev`` (reads and watches below it fail; it also preserves the revision
  counter when compaction removes the newest rows) and ``compact_swept`` (how far compaction
  has actually deleted, so an interrupted compaction resumes after a restart).
"""

from __future__ import annotations

import sqlite3

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS kv (
        name TEXT NOT NULL,
        revision INTEGER NOT NULL,
        create_revision INTEGER NOT NULL,
        prev_revision INTEGER NOT NULL,
        next_revision INTEGER,
        deleted INTEGER NOT NULL,
        value BLOB NOT NULL,
        PRIMARY KEY (name, revision)
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS kv_by_revision ON kv (revision)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('compact_rev', 0), ('compact_swept', 0)",
)


def connect(path: str, *, writer: bool) -> sqlite3.Connection:
    # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE in the writer); a
    # reader's SELECT runs in its own implicit read transaction, i.e. on one WAL snapshot.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        _configure(conn, writer=writer)
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection, *, writer: bool) -> None:
    conn.execute("PRAGMA busy_timeout = 10000")
    if writer:
        # WAL + synchronous=NORMAL: a committed transaction is in the WAL file when COMMIT
        # returns, so it survives the process being killed (not a power cut, which needs FULL).
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        for statement in SCHEMA:
            conn.execute(statement)
    # 8 MiB of page cache per connection (5 connections): the OS page cache holds the rest of
    # the file, and RSS stays small (the API server has a memory budget).
    conn.execute("PRAGMA cache_size = -8192")


def load_state(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """(current revision, compacted revision, swept revision) as stored."""
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    (max_revision,) = conn.execute("SELECT MAX(revision) FROM kv").fetchone()
    compacted = int(meta.get("compact_rev", 0))
    swept = int(meta.get("compact_swept", 0))
    return max(max_revision or 0, compacted), compacted, swept
