"""Opening a versioned SQLite store (the batch jobs, the consent records): WAL, the schema
in ``PRAGMA user_version``, older schemas migrated step by step, a newer one refused.

Layer: shell (blocking I/O: callers run it where blocking is allowed).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path


def open_versioned(path: Path, migrations: Sequence[str], *, what: str,
                   error: type[Exception], pragmas: Sequence[str] = ()) -> sqlite3.Connection:
    """The database at ``path`` (created, or migrated to ``len(migrations)``); every failure
    is an ``error`` naming the file and ``what`` store it is."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    except (OSError, sqlite3.Error) as exc:
        raise error(f"{path}: cannot open the {what}: {exc}") from exc
    try:
        _migrate(db, path, migrations, what, error, pragmas)
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: sqlite3.Connection, path: Path, migrations: Sequence[str], what: str,
             error: type[Exception], pragmas: Sequence[str]) -> None:
    latest = len(migrations)
    try:
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", *pragmas):
            db.execute(f"PRAGMA {pragma}")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > latest:
            raise error(f"{path}: {what} schema {version} is newer than this gateway's "
                        f"({latest})")
        for step in range(version, latest):
            db.execute("BEGIN IMMEDIATE")
            for statement in migrations[step].split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(f"PRAGMA user_version = {step + 1}")
            db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise error(f"{path}: not a usable {what}: {exc}") from exc
