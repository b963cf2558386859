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


@dataclass(frozen=True, slots=True)
class Variation:
    """Run each of ``models`` once per value of its config parameter ``key``."""

    key: str
    values: tuple[str, ...]
    models: tuple[str, ...]


@dataclass(slots=True)
class Variants:
    """What to load and, per bench model, the served names and the varied parameter
    (key, value), None for a model run as configured."""

    repository: Path | None                      # None: triton_models/ itself
    per_model: dict[str, list[tuple[str, tuple[str, str] | None]]] = field(
        default_factory=dict)

    @property
    def models(self) -> list[str]:
        return [served for pairs in self.per_model.values() for served, _v in pairs]

    def served(self, model: str) -> list[tuple[str, tuple[str, str] | None]]:
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


def configured(model: str, key: str) -> str | None:
    """``key``'s value in triton_models/<model>/config.pbtxt (None: absent)."""
    return config_parameter((MODEL_REPOSITORY / model / "config.pbtxt").read_text(), key)


def parameter_variants(models: Sequence[str], variations: Sequence[Variation], folder: Path
                       ) -> Variants:
    """Each model once per value of the first variation that names it and whose parameter
    its config has (the configured value from triton_models/, the others as variants under
    ``folder``); every other model as it is."""
    copies: dict[str, tuple[str, str, str]] = {}
    per_model: dict[str, list[tuple[str, tuple[str, str] | None]]] = {}
    for model in models:
        per_model[model] = [(model, None)]
        for v in variations:
            current = configured(model, v.key)
            if model not in v.models or current is None or not v.values:
                continue
            per_model[model] = []
            for value in dict.fromkeys(v.values):
                name = model if value == current else variant_name(model, v.key, value)
                if name != model:
                    copies[name] = (model, v.key, value)
                per_model[model].append((name, (v.key, value)))
            break
    repository = _build(folder, copies) if copies else None
    return Variants(repository, per_model)
