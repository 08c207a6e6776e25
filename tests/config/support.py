"""Writing a kink.toml to a temporary directory and loading it."""

from pathlib import Path

import pytest

from kink.daemon.config import ConfigError, KinkConfig, load
from kink.engine.config import PeerConfig

DAEMON = '[daemon]\naddress = "192.0.2.1"\n'  # the smallest valid file: two lines


def write(directory: Path, text: str) -> Path:
    path = directory / "kink.toml"
    path.write_text(text)
    return path


def load_text(directory: Path, text: str) -> KinkConfig:
    return load(write(directory, text))


def peer(config: KinkConfig, name: str) -> PeerConfig:
    return next(p for p in config.engine.peers if p.name == name)


def problems(directory: Path, text: str) -> list[str]:
    """The problems loading `text` reports, one a line, the file named kink.toml."""
    with pytest.raises(ConfigError) as caught:
        load_text(directory, text)
    return str(caught.value).replace(f"{directory}/", "").splitlines()
