"""The consent store: SQLite (the stdlib ``sqlite3``) in ``<state_dir>/consent.sqlite3``.

Two tables, both append-only: ``consent`` (every decision: a grant or a decline of one
channel of one call for one purpose, with its source, time, policy version and evidence)
and ``withdrawals`` (every withdrawal, by conversation or by call, with its reason; kept
forever). Nothing is updated or deleted: the history is the evidence.

* The latest decision per channel and purpose wins (:meth:`ConsentStore.exportable_channels`).
* A withdrawn conversation exports nothing, ever again, and takes no new grant
  (:class:`ConsentWithdrawnError`); declines are still recorded. A withdrawal by call id
  covers every conversation that call is part of, also records that come later.

The schema is versioned with ``PRAGMA user_version`` like the batch store; the database runs
in WAL mode, so the daemon and ``asr-gateway consent`` may use it at the same time (a writer
waits up to 10 s for the other). The API is synchronous: a decision is a few small writes
per call.

Layer: shell.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from gateway.consent.policy import ConsentRecord, latest_per_channel
from gateway.sqlite_store import open_versioned

SCHEMA_VERSION = 1
FILE_NAME = "consent.sqlite3"

_MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1
    """
    CREATE TABLE consent (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL,
        call_id TEXT NOT NULL,
        channel TEXT NOT NULL,
        granted INTEGER NOT NULL,
        purpose TEXT NOT NULL,
        source TEXT NOT NULL,
        at REAL NOT NULL,
        policy_version TEXT NOT NULL,
        evidence TEXT NOT NULL
    );
    CREATE INDEX consent_conversation ON consent (conversation_id, seq);
    CREATE INDEX consent_call ON consent (call_id);
    CREATE TABLE withdrawals (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT,
        call_id TEXT,
        reason TEXT NOT NULL,
        source TEXT NOT NULL,
        at REAL NOT NULL,
        grants_withdrawn INTEGER NOT NULL,
        channels TEXT NOT NULL
    );
    CREATE INDEX withdrawals_conversation ON withdrawals (conversation_id);
    CREATE INDEX withdrawals_call ON withdrawals (call_id);
    """,
)
assert len(_MIGRATIONS) == SCHEMA_VERSION

_COLUMNS = "conversation_id, call_id, channel, granted, purpose, source, at, policy_version, " \
           "evidence"
_WITHDRAWN = """
    SELECT seq, conversation_id, call_id, reason, source, at, grants_withdrawn, channels
    FROM withdrawals
    WHERE conversation_id = ?1
       OR (call_id IS NOT NULL AND call_id IN
           (SELECT call_id FROM consent WHERE conversation_id = ?1))
    ORDER BY seq
"""


class ConsentStoreError(OSError):
    """The store cannot be opened (not a database, made by a newer gateway, unreadable)."""


class ConsentWithdrawnError(ValueError):
    """A grant for a conversation whose consent was withdrawn (withdrawal is final)."""


def _record(row: tuple[Any, ...]) -> ConsentRecord:
    return ConsentRecord(conversation_id=row[0], call_id=row[1], channel=row[2],
                         granted=bool(row[3]), purpose=row[4], source=row[5], at=row[6],
                         policy_version=row[7], evidence=row[8])


def _withdrawal(row: tuple[Any, ...]) -> dict[str, Any]:
    return {"conversation_id": row[1], "call_id": row[2], "reason": row[3],
            "source": row[4], "at": row[5], "grants_withdrawn": row[6],
            "channels": json.loads(row[7])}


def _connect(path: Path) -> sqlite3.Connection:
    return open_versioned(path, _MIGRATIONS, what="consent store", error=ConsentStoreError)


class ConsentStore:
    """Consent decisions and withdrawals of every conversation; survives restarts."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = _connect(self.path)
        self._lock = threading.Lock()

    @classmethod
    def for_state_dir(cls, state_dir: Path) -> ConsentStore:
        return cls(Path(state_dir) / FILE_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ----------------------------------------------------------------- writes
    def record(self, rec: ConsentRecord) -> None:
        """Keep one decision; :class:`ConsentWithdrawnError` for a grant of a withdrawn
        conversation (or call)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if rec.granted and self._is_withdrawn(rec.conversation_id, rec.call_id):
                    raise ConsentWithdrawnError(
                        f"consent of conversation {rec.conversation_id} was withdrawn")
                self._db.execute(
                    f"INSERT INTO consent ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (rec.conversation_id, rec.call_id, rec.channel, int(rec.granted),
                     rec.purpose, rec.source, rec.at, rec.policy_version, rec.evidence))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def withdraw(self, *, conversation_id: str | None = None, call_id: str | None = None,
                 reason: str, at: float, source: str) -> int:
        """Withdraw the consent of a conversation (or of every conversation of a call): the
        number of grants (channel and purpose whose latest decision was a grant) that were
        in force. The withdrawal itself is recorded, also when it withdraws nothing."""
        if conversation_id is None and call_id is None:
            raise ValueError("withdraw needs a conversation_id or a call_id")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                count, channels = self._in_force(conversation_id, call_id)
                self._db.execute(
                    "INSERT INTO withdrawals (conversation_id, call_id, reason, source, at, "
                    "grants_withdrawn, channels) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (conversation_id, call_id, reason, source, at, count,
                     json.dumps(sorted(channels))))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return count

    def _in_force(self, conversation_id: str | None,
                  call_id: str | None) -> tuple[int, set[str]]:
        """Grants in force in the conversations a withdrawal covers (and their channels)."""
        conversations = {conversation_id} if conversation_id is not None else set()
        if call_id is not None:
            rows = self._db.execute("SELECT DISTINCT conversation_id FROM consent "
                                    "WHERE call_id = ?", (call_id,)).fetchall()
            conversations |= {r[0] for r in rows}
        count, channels = 0, set()
        for conv in conversations:
            if self._is_withdrawn(conv, None):
                continue
            for rec in self._grants_in_force(conv):
                count += 1
                channels.add(rec.channel)
        return count, channels

    def _grants_in_force(self, conversation_id: str) -> list[ConsentRecord]:
        records = self._records(conversation_id)
        purposes = {r.purpose for r in records}
        return [rec for purpose in sorted(purposes)
                for rec in latest_per_channel(records, purpose).values() if rec.granted]

    # ----------------------------------------------------------------- reads
    def exportable_channels(self, conversation_id: str, *, purpose: str) -> frozenset[str]:
        """Channels whose latest decision for ``purpose`` is a grant; nothing if withdrawn."""
        with self._lock:
            if self._is_withdrawn(conversation_id, None):
                return frozenset()
            latest = latest_per_channel(self._records(conversation_id), purpose)
        return frozenset(ch for ch, rec in latest.items() if rec.granted)

    def status(self, conversation_id: str) -> list[ConsentRecord]:
        """Every decision of the conversation, oldest first."""
        with self._lock:
            return self._records(conversation_id)

    def withdrawals(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every withdrawal that covers the conversation (by its id or one of its calls)."""
        with self._lock:
            rows = self._db.execute(_WITHDRAWN, (conversation_id,)).fetchall()
        return [_withdrawal(tuple(r)) for r in rows]

    def withdrawn(self, conversation_id: str) -> bool:
        with self._lock:
            return self._is_withdrawn(conversation_id, None)

    def known(self, conversation_id: str) -> bool:
        """Whether any decision or withdrawal names the conversation."""
        with self._lock:
            row = self._db.execute(
                "SELECT EXISTS (SELECT 1 FROM consent WHERE conversation_id = ?1) OR "
                "EXISTS (SELECT 1 FROM withdrawals WHERE conversation_id = ?1)",
                (conversation_id,)).fetchone()
        return bool(row[0])

    def _records(self, conversation_id: str) -> list[ConsentRecord]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM consent WHERE conversation_id = ? "
                                "ORDER BY seq", (conversation_id,)).fetchall()
        return [_record(tuple(r)) for r in rows]

    def _is_withdrawn(self, conversation_id: str, call_id: str | None) -> bool:
        if self._db.execute(_WITHDRAWN, (conversation_id,)).fetchone() is not None:
            return True
        if call_id is None:
            return False
        row = self._db.execute("SELECT 1 FROM withdrawals WHERE call_id = ? LIMIT 1",
                               (call_id,)).fetchone()
        return row is not None
