"""Train/dev/test by conversation, no speaker in two splits (issue 19).

:func:`assign_splits` groups the conversations that share any speaker (union-find over the
speaker sets: two conversations with the same agent, or the same customer calling twice,
are one group), so no conversation is split and no speaker is in two splits. Groups are
placed one at a time, the heaviest first (weight: the sum of ``weights``, the audio
seconds when the exporter passes them, else 1 per conversation; ties in the order of an
HMAC of the group's first conversation under ``salt``, so the order is random-looking but
the same for the same salt), each into the split that is furthest below its ratio
(placed weight / ratio smallest); ties go to train, then test, then dev. So a small dataset
fills train first, then test, then dev: 1 conversation -> train; 2 -> train, test; 3 ->
train, test, dev; and when one agent is in every conversation, everything is one group in
train: :func:`split_summary` reports empty splits and the largest group.

Which speakers to pass is the exporter's choice: passing only the customers' pseudonyms
lets an agent be in several splits (a model measured on voices it was trained on).

Layer: pure core.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SPLITS: tuple[str, str, str] = ("train", "dev", "test")
_TIE_ORDER = ("train", "test", "dev")


def _groups(conversations: Mapping[str, frozenset[str]]) -> list[list[str]]:
    """Conversations linked by a shared speaker (union-find), each group sorted."""
    parent = {c: c for c in conversations}

    def find(c: str) -> str:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    owner: dict[str, str] = {}
    for conv in sorted(conversations):
        for speaker in sorted(conversations[conv]):
            if speaker in owner:
                parent[find(conv)] = find(owner[speaker])
            else:
                owner[speaker] = conv
    groups: dict[str, list[str]] = {}
    for conv in sorted(conversations):
        groups.setdefault(find(conv), []).append(conv)
    return list(groups.values())


def _check_ratios(ratios: Sequence[float]) -> dict[str, float]:
    if len(ratios) != len(SPLITS) or any(r < 0 for r in ratios) or ratios[0] <= 0:
        raise ValueError(f"ratios are (train, dev, test), train > 0, none < 0: {ratios}")
    total = sum(ratios)
    return {name: r / total for name, r in zip(SPLITS, ratios, strict=True)}


def assign_splits(conversations: Mapping[str, frozenset[str]], *,
                  ratios: Sequence[float] = (0.8, 0.1, 0.1), salt: bytes,
                  weights: Mapping[str, float] | None = None) -> dict[str, str]:
    """Conversation -> "train" / "dev" / "test" (see the module doc).

    ``conversations``: each conversation's speakers (pseudonyms); ``ratios``: train, dev,
    test; ``weights``: per conversation (seconds of audio), 1 each when None."""
    share = _check_ratios(ratios)

    def weight(group: list[str]) -> float:
        return sum(weights.get(c, 0.0) for c in group) if weights is not None else len(group)

    def tiebreak(group: list[str]) -> str:
        return hmac.new(salt, group[0].encode(), hashlib.sha256).hexdigest()

    placed = dict.fromkeys(SPLITS, 0.0)
    out: dict[str, str] = {}
    for group in sorted(_groups(conversations), key=lambda g: (-weight(g), tiebreak(g))):
        split = min((s for s in _TIE_ORDER if share[s] > 0),
                    key=lambda s: (placed[s] / share[s], _TIE_ORDER.index(s)))
        placed[split] += weight(group)
        out.update(dict.fromkeys(group, split))
    return out


@dataclass(frozen=True, slots=True)
class SplitSummary:
    """What :func:`assign_splits` did, for the log and the dataset card."""

    conversations: dict[str, int]       # split -> conversations
    groups: int                         # speaker-linked groups
    largest_group: int                  # conversations in the largest one
    warnings: tuple[str, ...]           # empty splits, a group holding most of the data


def split_summary(conversations: Mapping[str, frozenset[str]],
                  assignment: Mapping[str, str], *,
                  ratios: Sequence[float] = (0.8, 0.1, 0.1)) -> SplitSummary:
    groups = _groups(conversations)
    counts = {s: sum(1 for c in conversations if assignment.get(c) == s) for s in SPLITS}
    largest = max((len(g) for g in groups), default=0)
    warnings = [f"{s} is empty" + _why(len(conversations), len(groups))
                for s, r in zip(SPLITS, _check_ratios(ratios).values(), strict=True)
                if r > 0 and counts[s] == 0]
    if len(groups) > 1 and largest > len(conversations) / 2:
        warnings.append(f"{largest} of {len(conversations)} conversations share speakers "
                        "(one group, one split)")
    return SplitSummary(counts, len(groups), largest, tuple(warnings))


def _why(conversations: int, groups: int) -> str:
    if conversations and groups == 1 and conversations > 1:
        return (f": all {conversations} conversations share a speaker (e.g. one agent in "
                "every call), so they are one group in one split")
    return f": {conversations} conversations in {groups} speaker groups"
