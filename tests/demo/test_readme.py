"""README.md's kink.toml examples are what kinkd accepts: every ```toml block loads."""

import re
from pathlib import Path

import pytest

from kink.daemon.config import loads

README = Path(__file__).resolve().parents[2] / "README.md"
_TOML = re.compile(r"^```toml\n(.*?)^```$", re.M | re.S)
BLOCKS = _TOML.findall(README.read_text())


def test_readme_has_toml_examples() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_toml_block_loads(block: str) -> None:
    config = loads(block, README)
    assert config.engine.peers
