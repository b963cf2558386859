"""Model variants for side-by-side benches: a temporary Triton model repository holding every
model of triton_models/ (linked) plus copies of a model under another name with one
``parameters`` value changed (its config.pbtxt rewritten, its version folders' files
linked), so one Triton serves e.g. ``asr_cpu_default`` (endpointing vad) and
``asr_cpu_default_ep_energy`` side by side. The text helpers are pure; the builder writes
links and configs under the folder it is given and never touches triton_models/.

Layer: shell.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.triton.fixtures import MODEL_REPOSITORY

ENDPOINTING = "endpointing"


def _parameter_re(key: str) -> re.Pattern[str]:
    return re.compile(r'(\{\s*key:\s*"' + re.escape(key)
                      + r'",\s*value:\s*\{\s*string_value:\s*")([^"]*)(")')


def config_parameter(config: str, key: str) -> str | None:
    """The string value of parameter ``key`` in a config.pbtxt text; None when absent."""
    m = _parameter_re(key).search(config)
    return None if m is None else m.group(2)


def with_parameter(config: str, name: str, key: str, value: str) -> str:
    """The config renamed to ``name`` with parameter ``key`` set to ``value`` (both must be
    there: ValueError otherwise)."""
    renamed, n = re.subn(r'^name:\s*"[^"]*"', f'name: "{name}"', config, count=1,
                         flags=re.MULTILINE)
    if n != 1:
        raise ValueError("config has no top-level name")
    changed, n = _parameter_re(key).subn(lambda m: m.group(1) + value + m.group(3), renamed)
    if n != 1:
        raise ValueError(f"config has no parameter {key!r}")
    return changed


def variant_name(model: str, key: str, value: str) -> str:
    short = "ep" if key == ENDPOINTING else key
    return f"{model}_{short}_{re.sub(r'[^A-Za-z0-9]+', '_', value)}"


@dataclass(slots=True)
class Variants:
    """What to load and, per bench model, the served names and their parameter values."""

    repository: Path | None                      # None: triton_models/ itself
    per_model: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return [served for pairs in self.per_model.values() for served, _v in pairs]

    def served(self, model: str) -> list[tuple[str, str | None]]:
        return self.per_model.get(model, [(model, None)])


def _link_version_folders(src: Path, dst: Path) -> None:
    for version in (p for p in src.iterdir() if p.is_dir() and p.name.isdigit()):
        (dst / version.name).mkdir(parents=True)
        for item in version.iterdir():
            if item.name != "__pycache__":
                (dst / version.name / item.name).symlink_to(item.resolve())


def _build(folder: Path, copies: dict[str, tuple[str, str, str]]) -> Path:
    """``copies``: variant name -> (model, key, value)."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in MODEL_REPOSITORY.iterdir():
        if (entry.is_dir() and not entry.name.startswith((".", "__"))
                and not (folder / entry.name).exists()):
            (folder / entry.name).symlink_to(entry.resolve())
    for name, (model, key, value) in copies.items():
        src, dst = MODEL_REPOSITORY / model, folder / name
        dst.mkdir()
        text = (src / "config.pbtxt").read_text()
        (dst / "config.pbtxt").write_text(with_parameter(text, name, key, value))
        _link_version_folders(src, dst)
    return folder


def endpointing_variants(models: Sequence[str], values: Sequence[str], folder: Path,
                         compared: Sequence[str]) -> Variants:
    """Each model of ``compared`` with an ``endpointing`` parameter once per value in
    ``values`` (its configured value from triton_models/, the others as variants under
    ``folder``); the other models, or all with no values, as they are."""
    copies: dict[str, tuple[str, str, str]] = {}
    per_model: dict[str, list[tuple[str, str | None]]] = {}
    for model in models:
        configured = config_parameter((MODEL_REPOSITORY / model / "config.pbtxt").read_text(),
                                      ENDPOINTING)
        if configured is None or not values or model not in compared:
            per_model[model] = [(model, configured)]
            continue
        per_model[model] = []
        for value in dict.fromkeys(values):
            if value == configured:
                per_model[model].append((model, value))
            else:
                name = variant_name(model, ENDPOINTING, value)
                copies[name] = (model, ENDPOINTING, value)
                per_model[model].append((name, value))
    repository = _build(folder, copies) if copies else None
    return Variants(repository, per_model)
