"""Import a Python file that is not on the path (a Triton model, a training script) as a
module of its own name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_source(name: str, path: Path) -> ModuleType:
    """``path`` executed as module ``name`` (registered in ``sys.modules`` first: dataclasses
    look their module up while the file runs)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"cannot import {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
