"""gateway.dataset.speakers: pseudonyms and hashed ids (HMAC)."""

from __future__ import annotations

import re

import pytest

from gateway.dataset.speakers import hashed_id, pseudonym

SALT = b"0123456789abcdef-dataset"
OTHER = b"fedcba9876543210-dataset"


def test_pseudonym_shape_and_stability() -> None:
    label = pseudonym(SALT, "customer", "sip:+442071234567@trunk")
    assert re.fullmatch(r"customer-[0-9a-f]{8}", label)
    assert label == pseudonym(SALT, "customer", "sip:+442071234567@trunk")
    assert "442071234567" not in label


def test_pseudonym_depends_on_salt_role_and_identity() -> None:
    base = pseudonym(SALT, "agent", "sip:sam@pbx")
    assert base != pseudonym(OTHER, "agent", "sip:sam@pbx")
    assert base != pseudonym(SALT, "agent", "sip:sue@pbx")
    assert base[len("agent-"):] != pseudonym(SALT, "customer", "sip:sam@pbx")[len("customer-"):]
    assert len({pseudonym(SALT, "agent", f"sip:{i}@pbx") for i in range(1000)}) == 1000


def test_hashed_id() -> None:
    h = hashed_id(SALT, "4f0c9a2e6b1d4a0f8e57c1d2b3a49876")
    assert re.fullmatch(r"[0-9a-f]{16}", h)
    assert h == hashed_id(SALT, "4f0c9a2e6b1d4a0f8e57c1d2b3a49876")
    assert h != hashed_id(OTHER, "4f0c9a2e6b1d4a0f8e57c1d2b3a49876")
    assert hashed_id(SALT, "x") != pseudonym(SALT, "agent", "x")[len("agent-"):]


@pytest.mark.parametrize("salt", [b"", b"short"])
def test_a_short_salt_is_refused(salt: bytes) -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        pseudonym(salt, "agent", "x")
    with pytest.raises(ValueError, match="16 bytes"):
        hashed_id(salt, "x")


@pytest.mark.parametrize("role", ["", "Agent", "sip:+4420@x", "agent customer"])
def test_a_role_is_a_short_word(role: str) -> None:
    with pytest.raises(ValueError, match="role"):
        pseudonym(SALT, role, "x")
