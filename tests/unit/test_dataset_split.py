"""gateway.dataset.split: splits by conversation, no speaker in two splits."""

from __future__ import annotations

import random

import pytest

from gateway.dataset.split import assign_splits, split_summary

SALT = b"0123456789abcdef-split"


def solo(n: int) -> dict[str, frozenset[str]]:
    """n conversations, each with its own agent and customer."""
    return {f"c{i:03d}": frozenset({f"agent-{i}", f"customer-{i}"}) for i in range(n)}


@pytest.mark.parametrize(("n", "expected"), [
    (0, {}),
    (1, {"train": 1}),
    (2, {"train": 1, "test": 1}),
    (3, {"train": 1, "test": 1, "dev": 1}),
    (10, {"train": 8, "test": 1, "dev": 1}),
    (100, {"train": 80, "test": 10, "dev": 10}),
])
def test_small_datasets_fill_train_then_test_then_dev(n: int, expected: dict[str, int]) -> None:
    out = assign_splits(solo(n), salt=SALT)
    assert set(out) == set(solo(n))
    counts: dict[str, int] = {}
    for split in out.values():
        counts[split] = counts.get(split, 0) + 1
    assert counts == expected


def test_one_agent_in_every_conversation_is_one_group_in_train_and_reported() -> None:
    convs = {f"c{i}": frozenset({"agent-1", f"customer-{i}"}) for i in range(20)}
    out = assign_splits(convs, salt=SALT)
    assert set(out.values()) == {"train"}
    summary = split_summary(convs, out)
    assert summary.groups == 1 and summary.largest_group == 20
    assert summary.conversations == {"train": 20, "dev": 0, "test": 0}
    assert any("dev is empty" in w and "share a speaker" in w for w in summary.warnings)
    assert any(w.startswith("test is empty") for w in summary.warnings)


def test_no_warnings_for_a_healthy_split() -> None:
    out = assign_splits(solo(50), salt=SALT)
    assert split_summary(solo(50), out).warnings == ()


def test_weights_balance_by_duration() -> None:
    convs = solo(20)
    weights = {c: (100.0 if i == 0 else 10.0) for i, c in enumerate(sorted(convs))}
    out = assign_splits(convs, salt=SALT, weights=weights)
    hours = {s: sum(weights[c] for c in convs if out[c] == s) for s in ("train", "dev", "test")}
    assert out["c000"] == "train"                    # heaviest first
    assert hours == {"train": 230.0, "dev": 30.0, "test": 30.0}


@pytest.mark.parametrize("salt", [bytes([i]) * 16 for i in range(10)])
def test_the_heaviest_group_is_placed_first(salt: bytes) -> None:
    convs = solo(6)
    weights = {c: (50.0 if c == "c003" else 10.0) for c in convs}
    out = assign_splits(convs, salt=salt, weights=weights)
    hours = {s: sum(weights[c] for c in convs if out[c] == s) for s in ("train", "dev", "test")}
    assert hours == {"train": 80.0, "dev": 10.0, "test": 10.0}


def test_deterministic_given_the_salt_and_salt_dependent() -> None:
    convs = solo(30)
    assert assign_splits(convs, salt=SALT) == assign_splits(dict(reversed(convs.items())),
                                                            salt=SALT)
    others = [assign_splits(convs, salt=bytes([i]) * 16) for i in range(5)]
    assert any(o != assign_splits(convs, salt=SALT) for o in others)


@pytest.mark.parametrize("seed", range(30))
def test_random_speaker_graphs_never_put_a_speaker_in_two_splits(seed: int) -> None:
    rng = random.Random(seed)
    agents = [f"agent-{i}" for i in range(rng.randint(1, 12))]
    customers = [f"customer-{i}" for i in range(rng.randint(1, 80))]
    convs = {f"c{i}": frozenset({rng.choice(agents), rng.choice(customers)})
             for i in range(rng.randint(1, 120))}
    out = assign_splits(convs, salt=SALT, ratios=(0.7, 0.15, 0.15))
    assert set(out) == set(convs) and set(out.values()) <= {"train", "dev", "test"}
    split_of: dict[str, str] = {}
    for conv, speakers in convs.items():
        for speaker in speakers:
            assert split_of.setdefault(speaker, out[conv]) == out[conv], speaker


def test_a_zero_ratio_split_stays_empty() -> None:
    out = assign_splits(solo(10), salt=SALT, ratios=(0.9, 0.0, 0.1))
    assert "dev" not in out.values()
    assert split_summary(solo(10), out, ratios=(0.9, 0.0, 0.1)).warnings == ()


@pytest.mark.parametrize("ratios", [(0.8, 0.2), (0.0, 0.5, 0.5), (0.8, -0.1, 0.3)])
def test_bad_ratios(ratios: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="ratios"):
        assign_splits(solo(3), salt=SALT, ratios=ratios)
