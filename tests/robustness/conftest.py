"""Fixtures for the robustness tests: the engine tests' MIT realm and Kerberos hosts
(tests/engine/conftest.py, imported so that pytest registers them here too), and `attack`:
hosts a and b (which also knows a host c) with an SA pair a negotiated with b, and every
engine's Kerberos calls recorded (tests.robustness.forge)."""

import pytest

from tests.engine.conftest import kerberos_host, make_world, realm
from tests.robustness.forge import Attack, make_attack

__all__ = ["attack", "kerberos_host", "make_world", "realm"]


@pytest.fixture
def attack(make_world: object, kerberos_host: object) -> Attack:
    return make_attack(make_world, kerberos_host)  # type: ignore[arg-type]
