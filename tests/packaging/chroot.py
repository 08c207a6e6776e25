"""A fresh Debian chroot to install kink's package into: debootstrap's minimal system
(--variant=minbase), fetched from the Debian mirror this machine's apt uses and cached under
build/ by a hash of debootstrap's arguments; every session works on a copy of it.

Commands run in the chroot inside new mount and PID namespaces (unshare) with their own /proc:
the kernel removes that mount, and kills whatever the command left running, when the command
ends, so no mount outlives a test, whatever way it fails."""

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"  # Debian 12, the release kink is packaged for
CHROOT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# One-line sources.list(5) entry: deb [options] URI SUITE COMPONENT...
_ONE_LINE = re.compile(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.+)$")


def _one_line_sources(text: str) -> list[tuple[str, str, list[str]]]:
    entries = []
    for line in text.splitlines():
        found = _ONE_LINE.match(line.split("#", 1)[0].strip())
        if found:
            entries.append((found[1], found[2], found[3].split()))
    return entries


def _deb822_sources(text: str) -> list[tuple[str, str, list[str]]]:
    """sources.list(5)'s deb822 form: stanzas of `Field: value` (continued on indented lines)
    separated by blank lines."""
    entries = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        last = ""
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1].isspace() and last:
                fields[last] += " " + line.strip()
            elif ":" in line:
                last, value = (part.strip() for part in line.split(":", 1))
                fields[last.lower()] = value
                last = last.lower()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled") == "no":
            continue
        components = fields.get("components", "").split()
        for uri in fields.get("uris", "").split():
            for suite in fields.get("suites", "").split():
                entries.append((uri, suite, components))
    return entries


def debian_mirror(apt: Path = Path("/etc/apt")) -> str | None:
    """The URI of the mirror this machine's apt fetches SUITE's main component from."""
    entries = []
    listed = sorted((apt / "sources.list.d").glob("*.list"))
    for path in [apt / "sources.list", *listed]:
        if path.is_file():
            entries += _one_line_sources(path.read_text())
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        entries += _deb822_sources(path.read_text())
    for uri, suite, components in entries:
        if suite == SUITE and "main" in components:
            return uri.rstrip("/")
    return None


def debootstrap_args(mirror: str) -> list[str]:
    """Everything the chroot is made of but its directory. Nothing is --include'd: the
    package's dependencies are what apt-get must find by itself."""
    return ["--variant=minbase", "--components=main", SUITE, mirror]


def cached_base(cache: Path, mirror: str) -> Path:
    """debootstrap's chroot for `mirror`, made once: later calls with the same arguments find
    it in `cache`. It is built beside its final name and renamed into place when complete, so
    an interrupted debootstrap leaves no half chroot to be taken for a cached one."""
    args = debootstrap_args(mirror)
    key = hashlib.sha256("\0".join(args).encode()).hexdigest()[:16]
    base = cache / f"{SUITE}-{key}"
    if base.is_dir():
        return base
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{base.name}.", dir=cache))
    try:
        target = scratch / "root"
        # In a mount namespace of its own: the /proc and /sys debootstrap mounts in the target
        # go with it even if it is killed, and are never under the tree rmtree deletes.
        done = subprocess.run(
            ["unshare", "--mount", "debootstrap", *args[:3], str(target), args[3]],
            capture_output=True,
            text=True,
            env={"PATH": CHROOT_PATH, "LC_ALL": "C.UTF-8"},
        )
        if done.returncode != 0:
            raise RuntimeError(f"debootstrap failed:\n{done.stdout[-3000:]}{done.stderr}")
        # debootstrap's own .debs (31 MB) would be copied with every chroot for nothing.
        shutil.rmtree(target / "var/cache/apt/archives")
        (target / "var/cache/apt/archives/partial").mkdir(parents=True)
        try:
            target.rename(base)
        except OSError:  # another session cached the same chroot meanwhile
            if not base.is_dir():
                raise
    finally:
        shutil.rmtree(scratch)
    return base


@dataclass(frozen=True)
class Chroot:
    root: Path

    @classmethod
    def copy_of(cls, base: Path, root: Path) -> "Chroot":
        """A fresh chroot at `root`, copied from `base`, with this host's resolver (the one in
        the cache is from the day debootstrap ran) and services forbidden to start
        (invoke-rc.d's policy-rc.d, exit 101: action not allowed)."""
        subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(root)], check=True)
        shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
        policy = root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        return cls(root)

    def path(self, inside: str) -> Path:
        """The host's path to `inside`, an absolute path in the chroot."""
        return self.root / inside.lstrip("/")

    def run(self, *argv: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
        """argv in the chroot, as root or as `user` (and that user's group)."""
        userspec = [f"--userspec={user}:{user}"] if user else []
        return subprocess.run(
            [
                "unshare",
                "--mount",
                "--pid",
                "--fork",
                f"--mount-proc={self.root / 'proc'}",
                "chroot",
                *userspec,
                str(self.root),
                *argv,
            ],
            capture_output=True,
            text=True,
            env={
                "PATH": CHROOT_PATH,
                "LC_ALL": "C.UTF-8",
                "HOME": "/root",
                "DEBIAN_FRONTEND": "noninteractive",
            },
        )

    def apt_get(self, *args: str) -> subprocess.CompletedProcess[str]:
        """apt-get without a terminal (no pty for dpkg's log: the chroot has no /dev/pts)."""
        return self.run("apt-get", "-q", "-o", "Dpkg::Use-Pty=0", *args)

    def delete(self) -> None:
        shutil.rmtree(self.root)


def usable() -> str | None:
    """Why this machine cannot build chroots, or None."""
    if os.geteuid() != 0:
        return "debootstrap and chroot need root"
    missing = [tool for tool in ("debootstrap", "unshare", "chroot") if shutil.which(tool) is None]
    if missing:
        return f"not installed: {' '.join(missing)}"
    return None
