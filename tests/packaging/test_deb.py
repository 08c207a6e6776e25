"""`make deb`'s package: built with dpkg-buildpackage, checked by lintian, its dependencies
resolved against this Debian's archive, and its programs run from the unpacked files with the
host's Debian Python packages. test_install.py installs it for real, in a chroot."""

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.packaging.conftest import needs_build_tools

pytestmark = [pytest.mark.deb, needs_build_tools]
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def unpacked(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    yield root


def _field(deb: Path, name: str) -> str:
    done = subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True)
    return done.stdout.strip()


@pytest.mark.skipif(shutil.which("lintian") is None, reason="lintian is not installed")
def test_lintian_reports_no_errors(deb: Path) -> None:
    done = subprocess.run(
        ["lintian", "--info", "--pedantic", "--display-info", str(deb)],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": SYSTEM_PATH},
    )
    tags = [line for line in done.stdout.splitlines() if line[:2] in ("E:", "W:", "I:", "P:")]
    print("\nlintian:\n" + ("\n".join(tags) or "(nothing)"))
    assert not [tag for tag in tags if tag.startswith("E:")]


def test_contents(deb: Path, unpacked: Path) -> None:
    for path in (
        "usr/bin/kinkd",
        "usr/bin/kinkctl",
        "usr/bin/kink-privsep",
        "lib/systemd/system/kinkd.service",
        "lib/systemd/system/kink-privsep.service",
        "lib/systemd/system/kink-privsep.socket",
        "usr/lib/sysusers.d/kink.conf",
        "usr/lib/tmpfiles.d/kink.conf",
        "usr/lib/sysctl.d/50-kink.conf",
        "usr/share/man/man8/kinkd.8.gz",
        "usr/share/man/man8/kinkctl.8.gz",
        "usr/share/man/man8/kink-privsep.8.gz",
        "usr/share/man/man5/kink.toml.5.gz",
        "usr/share/doc/kink/keytab-permissions.md",
        "etc/kink/kink.toml",
    ):
        assert (unpacked / path).exists(), path
    assert list((unpacked / "usr/lib/python3/dist-packages/kink/krb5").glob("_krb5*.so"))
    conffiles = subprocess.run(
        ["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True
    ).stdout
    assert b"/etc/kink/kink.toml" in conffiles
    depends = _field(deb, "Depends")
    for needed in ("libkrb5-3", "python3-trio", "python3-cryptography", "python3-msgpack"):
        assert needed in depends
    assert "pyroute2" not in depends  # a test tool, never imported by kink at run time


def test_dependencies_are_installable(deb: Path) -> None:
    done = subprocess.run(
        ["apt-get", "install", "--simulate", "--no-install-recommends", str(deb)],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": SYSTEM_PATH},
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _run_from(root: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """argv with the package's Python files first on the path; in `root`, so that the source
    tree (the current directory of the tests) is not on it."""
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=root,
        env={
            "PATH": SYSTEM_PATH,
            "PYTHONPATH": str(root / "usr/lib/python3/dist-packages"),
            "PYTHONNOUSERSITE": "1",
        },
    )


def test_code_and_binding_come_from_the_package(unpacked: Path) -> None:
    done = _run_from(
        unpacked, ["/usr/bin/python3", "-c", "import kink.krb5._krb5 as m; print(m.__file__)"]
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(unpacked))


@pytest.mark.parametrize(
    "argv",
    [
        ["kinkd", "--config", "{root}/etc/kink/kink.toml", "--check-config"],
        ["kinkctl", "--help"],
        ["kink-privsep", "--help"],
    ],
)
def test_programs_run_from_the_package(unpacked: Path, argv: list[str]) -> None:
    """The package's console scripts (#!/usr/bin/python3) with Debian's python3-* libraries."""
    program, *args = argv
    command = [str(unpacked / "usr/bin" / program), *(a.format(root=unpacked) for a in args)]
    done = _run_from(unpacked, command)
    assert done.returncode == 0, done.stderr
