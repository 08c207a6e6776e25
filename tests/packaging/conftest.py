"""Shared pieces of the packaging tests: the source tree's packaging/ directory, the man
page generator, loaded from its file (packaging/ is not a Python package: it would shadow the
`packaging` library), the package `make deb` builds and a Debian chroot with it installed."""

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.packaging.chroot import Chroot, cached_base, debian_mirror

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging"
UNITS = PACKAGING / "systemd"

needs_build_tools = pytest.mark.skipif(
    shutil.which("dpkg-buildpackage") is None or shutil.which("dh") is None,
    reason="dpkg-dev and debhelper are not installed",
)


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


@pytest.fixture(scope="session")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kink_*.deb, built by packaging/build-deb (what `make deb` runs)."""
    out = tmp_path_factory.mktemp("deb")
    subprocess.run([str(PACKAGING / "build-deb"), str(out)], check=True, capture_output=True)
    (package,) = out.glob("kink_*.deb")
    return package


@pytest.fixture(scope="session")
def installed(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chroot]:
    """A fresh Debian chroot into which apt-get has installed the package: its dependencies
    fetched from the mirror, its maintainer scripts run. Deleted at the end of the session."""
    mirror = debian_mirror()
    if mirror is None:
        pytest.skip("this machine's apt has no Debian bookworm main source")
    base = cached_base(ROOT / "build/deb-chroot", mirror)
    chroot = Chroot.copy_of(base, tmp_path_factory.mktemp("chroot") / "root")
    try:
        shutil.copy(deb, chroot.root / "tmp")
        for args in (
            ("update", "--error-on=any"),
            # kink has no Recommends; its dependencies' (dbus, ca-certificates, ...) add
            # nothing kink uses.
            ("install", "-y", "--no-install-recommends", f"/tmp/{deb.name}"),
        ):
            done = chroot.apt_get(*args)
            assert done.returncode == 0, done.stdout + done.stderr
        yield chroot
    finally:
        chroot.delete()
