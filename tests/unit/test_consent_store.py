"""The consent store (gateway/consent/store.py): a real SQLite file in a temporary directory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.consent import ConsentRecord, ConsentStore, ConsentWithdrawnError
from gateway.consent.store import SCHEMA_VERSION, ConsentStoreError


def rec(channel: str = "customer", granted: bool = True, at: float = 100.0, *,
        conversation_id: str = "conv-1", call_id: str = "c-1",
        purpose: str = "asr_training", source: str = "header:X-Consent") -> ConsentRecord:
    return ConsentRecord(conversation_id=conversation_id, call_id=call_id, channel=channel,
                         granted=granted, purpose=purpose, source=source, at=at,
                         policy_version="1", evidence="X-Consent: yes")


def test_nothing_recorded_nothing_exportable(tmp_path: Path) -> None:
    store = ConsentStore.for_state_dir(tmp_path)
    assert store.path == tmp_path / "consent.sqlite3"
    assert store.exportable_channels("conv-1", purpose="asr_training") == frozenset()
    assert store.status("conv-1") == [] and store.withdrawals("conv-1") == []
    assert not store.known("conv-1")
    store.close()


def test_survives_a_restart_and_runs_in_wal(tmp_path: Path) -> None:
    store = ConsentStore.for_state_dir(tmp_path)
    store.record(rec("customer"))
    store.record(rec("agent", granted=False, at=101))
    store.close()
    again = ConsentStore.for_state_dir(tmp_path)
    assert again.status("conv-1") == [rec("customer"), rec("agent", granted=False, at=101)]
    assert again.exportable_channels("conv-1", purpose="asr_training") == {"customer"}
    again.close()
    db = sqlite3.connect(tmp_path / "consent.sqlite3")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_latest_decision_per_channel_and_purpose_wins(tmp_path: Path) -> None:
    store = ConsentStore(tmp_path / "c.sqlite3")
    store.record(rec("customer", True, 100))
    store.record(rec("customer", False, 200, source="api"))
    store.record(rec("agent", False, 100))
    store.record(rec("agent", True, 150, source="ivr_dtmf"))
    store.record(rec("customer", True, 300, purpose="tts_voice"))
    assert store.exportable_channels("conv-1", purpose="asr_training") == {"agent"}
    assert store.exportable_channels("conv-1", purpose="tts_voice") == {"customer"}
    assert store.exportable_channels("conv-2", purpose="asr_training") == frozenset()
    store.close()


def test_withdrawal_is_final_recorded_and_counted(tmp_path: Path) -> None:
    store = ConsentStore(tmp_path / "c.sqlite3")
    store.record(rec("customer"))
    store.record(rec("agent"))
    store.record(rec("customer", purpose="tts_voice"))
    store.record(rec("customer", conversation_id="conv-2", call_id="c-2"))
    n = store.withdraw(conversation_id="conv-1", reason="caller asked", at=500.0, source="api")
    assert n == 3
    assert store.exportable_channels("conv-1", purpose="asr_training") == frozenset()
    assert store.exportable_channels("conv-1", purpose="tts_voice") == frozenset()
    assert store.exportable_channels("conv-2", purpose="asr_training") == {"customer"}
    (w,) = store.withdrawals("conv-1")
    assert w == {"conversation_id": "conv-1", "call_id": None, "reason": "caller asked",
                 "source": "api", "at": 500.0, "grants_withdrawn": 3,
                 "channels": ["agent", "customer"]}
    with pytest.raises(ConsentWithdrawnError):
        store.record(rec("customer", at=600))                 # no grant after a withdrawal
    store.record(rec("customer", granted=False, at=600))      # a decline is still kept
    assert store.withdraw(conversation_id="conv-1", reason="again", at=700.0, source="cli") == 0
    store.close()
    again = ConsentStore(tmp_path / "c.sqlite3")
    assert again.exportable_channels("conv-1", purpose="asr_training") == frozenset()
    assert [w["reason"] for w in again.withdrawals("conv-1")] == ["caller asked", "again"]
    assert len(again.status("conv-1")) == 4
    again.close()


def test_withdrawal_by_call_id_covers_its_conversation_and_later_records(tmp_path: Path) -> None:
    store = ConsentStore(tmp_path / "c.sqlite3")
    store.record(rec("customer", call_id="c-9"))
    assert store.withdraw(call_id="c-9", reason="r", at=1.0, source="api") == 1
    assert store.exportable_channels("conv-1", purpose="asr_training") == frozenset()
    assert store.withdraw(call_id="c-unknown", reason="r", at=2.0, source="api") == 0
    with pytest.raises(ConsentWithdrawnError):
        store.record(rec("agent", call_id="c-unknown", conversation_id="conv-3"))
    with pytest.raises(ValueError, match="conversation_id or a call_id"):
        store.withdraw(reason="r", at=3.0, source="api")
    store.close()


def test_two_connections_see_each_other(tmp_path: Path) -> None:
    """The daemon and the CLI at the same time (WAL)."""
    daemon = ConsentStore.for_state_dir(tmp_path)
    cli = ConsentStore.for_state_dir(tmp_path)
    daemon.record(rec("customer"))
    assert cli.exportable_channels("conv-1", purpose="asr_training") == {"customer"}
    cli.withdraw(conversation_id="conv-1", reason="r", at=2.0, source="cli")
    assert daemon.exportable_channels("conv-1", purpose="asr_training") == frozenset()
    daemon.close()
    cli.close()


def test_refuses_a_newer_schema_and_a_non_database(tmp_path: Path) -> None:
    path = tmp_path / "consent.sqlite3"
    ConsentStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(ConsentStoreError, match="newer"):
        ConsentStore(path)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConsentStoreError, match="not a usable consent store"):
        ConsentStore(junk)
