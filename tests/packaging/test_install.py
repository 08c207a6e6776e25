"""The package installed for real: apt-get installs it into a fresh Debian 12 chroot
(debootstrap --variant=minbase), resolving its dependencies from the mirror and running its
maintainer scripts; its programs run there as the units run them; it is removed, purged and
installed again."""

import gzip
import hashlib
from pathlib import Path

import pytest

from kink.daemon.config import load
from tests.packaging.chroot import Chroot, usable
from tests.packaging.conftest import ROOT, UNITS, needs_build_tools

UNUSABLE = usable()
pytestmark = [
    pytest.mark.deb,
    needs_build_tools,
    pytest.mark.skipif(UNUSABLE is not None, reason=str(UNUSABLE)),
]
EXAMPLE = ROOT / "kink.toml.example"
STATE_DIR = "/var/lib/kink"
MAN_PAGES = ("man8/kinkd.8", "man8/kinkctl.8", "man8/kink-privsep.8", "man5/kink.toml.5")


def _ok(chroot: Chroot, *argv: str, user: str | None = None) -> str:
    done = chroot.run(*argv, user=user)
    assert done.returncode == 0, (argv, done.stdout + done.stderr)
    return done.stdout


def _apt_ok(chroot: Chroot, *args: str) -> None:
    done = chroot.apt_get(*args)
    assert done.returncode == 0, done.stdout + done.stderr


def _status(chroot: Chroot) -> str:
    """dpkg's status of kink: "ii " installed, "rc " removed with its conffiles, "" unknown."""
    return chroot.run("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "kink").stdout


def test_installed_with_its_dependencies(installed: Chroot) -> None:
    """dpkg configured kink, so its dependencies were found and its postinst succeeded; the
    code and the libkrb5 binding are the package's, loaded against the chroot's libkrb5."""
    assert _status(installed) == "ii "
    assert _ok(installed, "dpkg", "--audit") == ""
    module = _ok(installed, "python3", "-c", "import kink.krb5._krb5 as m; print(m.__file__)")
    assert module.startswith("/usr/lib/python3/dist-packages/kink/krb5/_krb5.")


def test_kinkd_checks_the_shipped_configuration_as_its_user(installed: Chroot) -> None:
    """What kinkd.service's ExecStartPre runs, as its User=kink: the example the package ships
    is valid and readable by kinkd. (--check-config checks the file, not the keytab it names,
    which the administrator puts in place afterwards.)"""
    peers = len(load(EXAMPLE).engine.peers)
    out = _ok(installed, "kinkd", "--check-config", "--config", "/etc/kink/kink.toml", user="kink")
    assert out == f"kinkd: /etc/kink/kink.toml: OK ({peers} peers)\n"


def test_kinkd_rejects_an_invalid_configuration(installed: Chroot) -> None:
    installed.path("/tmp/bad.toml").write_text('[daemon]\naddress = "192.0.2.1"\nport = "x"\n')
    done = installed.run("kinkd", "--check-config", "--config", "/tmp/bad.toml")
    assert done.returncode == 2
    assert done.stderr.startswith("kinkd: /tmp/bad.toml:3: daemon.port:"), done.stderr


@pytest.mark.parametrize("program", ["kinkctl", "kink-privsep"])
def test_programs_run(installed: Chroot, program: str) -> None:
    assert _ok(installed, program, "--help").startswith(f"usage: {program} ")


def test_configuration_is_a_conffile(installed: Chroot) -> None:
    conffiles = _ok(installed, "dpkg-query", "-W", "-f=${Conffiles}", "kink").split()
    digest = hashlib.md5(EXAMPLE.read_bytes(), usedforsecurity=False).hexdigest()
    assert conffiles == ["/etc/kink/kink.toml", digest]


def test_users_and_directories_exist(installed: Chroot) -> None:
    """sysusers.d made the system users, tmpfiles.d their directories."""
    for user in ("kink", "kink-privsep"):
        entry = _ok(installed, "getent", "passwd", user).strip().split(":")
        assert int(entry[2]) < 1000 and entry[6] == "/usr/sbin/nologin", entry
    modes = _ok(installed, "stat", "-c", "%n %a %U %G", STATE_DIR, "/run/kink", "/run/kink-privsep")
    assert modes.splitlines() == [
        f"{STATE_DIR} 750 kink kink",
        "/run/kink 750 kink kink",
        "/run/kink-privsep 755 root root",
    ]


def test_units_are_installed_and_not_enabled(installed: Chroot) -> None:
    """The units as packaging/systemd has them; systemd-analyze verifies them against the
    installed programs. Nothing is enabled: kinkd needs a keytab and peers first."""
    names = sorted(unit.name for unit in UNITS.iterdir())
    for name in names:
        installed_unit = installed.path(f"/lib/systemd/system/{name}")
        assert installed_unit.read_bytes() == (UNITS / name).read_bytes(), name
    paths = [f"/lib/systemd/system/{name}" for name in names]
    verify = installed.run("systemd-analyze", "verify", "--man=no", *paths)
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    assert not list(installed.path("/etc/systemd/system").rglob("kink*"))


def test_man_pages_are_installed(installed: Chroot) -> None:
    for page in MAN_PAGES:
        text = gzip.decompress(installed.path(f"/usr/share/man/{page}.gz").read_bytes())
        name, section = Path(page).name.rsplit(".", 1)
        assert text.startswith(f'.TH "{name.upper()}" "{section}"'.encode()), (page, text[:80])


def test_remove_purge_and_install_again(installed: Chroot, deb: Path) -> None:
    """remove keeps the conffile, purge removes it and kinkd's state, and a second install on
    the users the first one left behind works."""
    (installed.path(STATE_DIR) / "epoch").write_text("1\n")
    _apt_ok(installed, "remove", "-y", "kink")
    assert _status(installed) == "rc "
    assert installed.path("/etc/kink/kink.toml").exists()
    assert not installed.path("/usr/bin/kinkd").exists()
    # prerm's py3clean removed the .pyc files py3compile made: nothing of kink is left
    assert not installed.path("/usr/lib/python3/dist-packages/kink").exists()

    _apt_ok(installed, "purge", "-y", "kink")
    assert _status(installed) == ""
    assert not installed.path("/etc/kink").exists()
    assert not installed.path(STATE_DIR).exists()
    state = installed.path("/var/lib/systemd/deb-systemd-helper-enabled")
    assert not list(state.rglob("kink*"))

    _apt_ok(installed, "install", "-y", "--no-install-recommends", f"/tmp/{deb.name}")
    assert _status(installed) == "ii "
    _ok(installed, "kinkd", "--check-config", "--config", "/etc/kink/kink.toml", user="kink")
