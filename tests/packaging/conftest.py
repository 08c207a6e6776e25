"""Shared pieces of the packaging tests: the source tree's packaging/ directory and the man
page generator, loaded from its file (packaging/ is not a Python package: it would shadow the
`packaging` library)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
UNITS = PACKAGING / "systemd"


def load_gen_man() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_man", PACKAGING / "gen_man.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_man"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def gen_man() -> ModuleType:
    return load_gen_man()
