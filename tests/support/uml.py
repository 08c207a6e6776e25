"""Run shell scripts (or pytest) inside a user-mode Linux kernel that has real ESP/AH.

The host and CI kernels have XFRM but no esp4/ah4 (shared/notes/xfrm.md), so tests that need
packets to really be encrypted boot Debian's `user-mode-linux` 6.1 kernel as an ordinary
process. Its root filesystem is the host's / through hostfs (read-write), so the script sees
this repository, its .venv and the system tools exactly as the host does.

Inside, the script (POSIX sh, root) finds:
- cwd = the repository root; PATH starting with <repo>/.venv/bin; HOME=/tmp; KINK_IN_UML=1;
- /proc, /sys, /dev (devtmpfs, /dev/pts, /dev/shm); fresh tmpfs on /tmp and /run, so nothing
  there touches the host's (`ip netns add` makes /run/netns there); lo is up;
- modules loaded: MODULES below (ESP/AH/IPComp for IPv4 and IPv6, xfrm_user, veth, dummy and
  every crypto module that AES-CBC + HMAC-SHA1/256/384/512, AES-GCM (rfc4106), AES-CCM,
  ChaCha20-Poly1305, 3DES, XCBC/CMAC and cipher_null need). The kernel's own module
  autoloading is off (see uml_init.sh for why); `modprobe NAME` in the script still works;
- $UML_OUT: a directory on the host (same path inside and outside) for results the host reads.
  Other host paths under /tmp or /run are hidden by the tmpfs mounts.

Each run has its own work dir, umid and uml_dir, so runs may overlap in threads or processes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
_INIT_SCRIPT = Path(__file__).with_name("uml_init.sh")
_MODULE_DIR = Path("/usr/lib/uml/modules")
# Inside UML, in its /run tmpfs: where the UML modules and a second view of the host's / are.
_MODROOT = "/run/kink-uml/modules"
_HOST_VIEW = "/run/kink-uml/host"

# Names as modprobe takes them; dependencies (ipv6, xfrm_algo, tunnel4, libdes, ...) follow.
MODULES: tuple[str, ...] = (
    "xfrm_user",
    "esp4",
    "esp6",
    "ah4",
    "ah6",
    "ipcomp",
    "ipcomp6",
    "xfrm4_tunnel",
    "xfrm6_tunnel",
    "veth",
    "dummy",
    # ESP builds "echainiv(authenc(hmac(H),cbc(aes)))" and "seqiv(rfc4106(gcm(aes)))": the
    # IV generators seed from the default RNG (drbg), which reseeds from jitterentropy; without
    # drbg every such SA fails with "Kernel was unable to initialize cryptographic operations".
    "authenc",
    "authencesn",
    "cbc",
    "ctr",
    "ecb",
    "gcm",
    "ghash-generic",
    "ccm",
    "chacha20poly1305",
    "hmac",
    "sha512_generic",
    "xcbc",
    "cmac",
    "des_generic",
    "deflate",
    "echainiv",
    "seqiv",
    "drbg",
    "jitterentropy_rng",
)

# Built-in initcalls that only benchmark RAID6/XOR implementations for btrfs and md: 0.85 s of
# a 1.6 s boot, for code nothing here runs.
_SKIPPED_INITCALLS = ("raid6_select_algo", "calibrate_xor_blocks")
_MEM_RE = re.compile(r"([1-9][0-9]*)([KMG])")
_MEM_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
# What a run leaves in its work dir: the boot log (kernel + init), the script's output, its rc.
_CONSOLE = "console.log"
_OUTPUT = "output"
_RC = "rc"


class UmlError(Exception):
    """UML could not run the script (failed boot or setup); the message holds the console log."""


class UmlTimeout(UmlError):
    """The run exceeded its timeout; UML was killed. `output` is what the script had printed."""

    def __init__(self, timeout: float, output: str) -> None:
        super().__init__(f"UML run exceeded {timeout} s and was killed; script output:\n{output}")
        self.timeout = timeout
        self.output = output


@dataclass(frozen=True)
class UmlResult:
    returncode: int  # exit status of the script inside UML
    output: str  # its combined stdout+stderr (no kernel messages)


@functools.cache
def _kernel() -> tuple[str, str] | str:
    """(binary, version) of the UML kernel, or why it cannot be used."""
    binary = shutil.which("linux.uml") or shutil.which("linux")
    if binary is None:
        return "no UML kernel (install the user-mode-linux package)"
    if shutil.which("modprobe") is None:
        return "no modprobe (install the kmod package)"
    try:
        version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{binary} --version failed: {exc}"
    moddir = _MODULE_DIR / version
    if not (moddir / "modules.dep").is_file():
        return f"no UML modules for {version} in {moddir}"
    known = {
        Path(line.split(":", 1)[0]).name.removesuffix(".ko").replace("-", "_")
        for line in (moddir / "modules.dep").read_text().splitlines()
    }
    missing = [m for m in MODULES if m.replace("-", "_") not in known]
    if missing:
        return f"UML {version} lacks modules: {' '.join(missing)}"
    return binary, version


def available() -> str | None:
    """None if UML can run here; otherwise the reason, for pytest.skip."""
    kernel = _kernel()
    return kernel if isinstance(kernel, str) else None


def require_uml() -> None:
    """Skip the calling test when UML is unavailable, but fail it on CI (CI set in the
    environment): CI installs user-mode-linux, so a skip there would hide lost coverage."""
    reason = available()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"UML must be available on CI: {reason}")
    pytest.skip(reason)


def require_in_uml() -> None:
    """Skip the calling test unless it runs inside UML (see run_pytest_in_uml)."""
    if os.environ.get("KINK_IN_UML") != "1":
        pytest.skip("runs only inside UML (through tests.support.uml.run_pytest_in_uml)")


def _env_file(out: Path, env: Mapping[str, str]) -> str:
    variables = {
        "PATH": f"{REPO_ROOT}/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
        ":/sbin:/bin",
        # /tmp is UML's own tmpfs: nothing run inside writes into the host's home.
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "KINK_IN_UML": "1",
        "UML_OUT": str(out),
        "KINK_UML_REPO": str(REPO_ROOT),
        "KINK_UML_MODULES": " ".join(MODULES),
        # The host has no /lib/modules/<version> to mount the UML modules on (and must not
        # get one): modprobe -d reads <dir>/lib/modules/<version>, a bind mount in _fstab.
        "MODPROBE_OPTIONS": f"-d {_MODROOT}",
        **env,
    }
    for name in variables:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"invalid environment variable name {name!r}")
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in variables.items())


def _fstab_path(path: str) -> str:
    # fstab(5) separates fields by whitespace and escapes it in octal.
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


def _fstab(work: Path, out: Path) -> str:
    """All of init's mounts, for one `mount -a` (one exec instead of a dozen)."""
    entries = [
        ("proc", "/proc", "proc", "defaults"),
        ("sysfs", "/sys", "sysfs", "defaults"),
        # Before anything with X-mount.* options: libmount records those in /run/mount/utab,
        # which must be UML's, not the host's.
        ("tmpfs", "/run", "tmpfs", "mode=755"),
        ("tmpfs", "/tmp", "tmpfs", "mode=1777"),
        ("devpts", "/dev/pts", "devpts", "X-mount.mkdir"),
        ("tmpfs", "/dev/shm", "tmpfs", "mode=1777,X-mount.mkdir"),
        # A second view of the host's /, not covered by the tmpfs mounts, to bind from: the
        # repository, work and output dirs may sit under the host's /tmp. Bound back at the
        # same paths, host and script name the same files. Parents first.
        ("none", _HOST_VIEW, "hostfs", "X-mount.mkdir"),
        *(
            (f"{_HOST_VIEW}{d}", str(d), "none", "bind,X-mount.mkdir")
            for d in (REPO_ROOT, work, out)
        ),
        (
            f"{_HOST_VIEW}{_MODULE_DIR}",
            f"{_MODROOT}/lib/modules",
            "none",
            "bind,X-mount.mkdir",
        ),
    ]
    return "".join(
        f"{_fstab_path(src)} {_fstab_path(dst)} {fstype} {opts} 0 0\n"
        for src, dst, fstype, opts in entries
    )


def _uml_environ(mem: str) -> dict[str, str]:
    """The host environment for the UML process.

    UML backs its RAM with a file in $TMPDIR, else in /dev/shm. A container's /dev/shm is often
    64 MiB: a guest touching more pages than that dies of SIGBUS, so use the temp dir then."""
    environ = dict(os.environ)
    match = _MEM_RE.fullmatch(mem)
    if match is None:
        raise ValueError(f"mem must look like 768M, not {mem!r}")
    size = int(match[1]) * _MEM_UNITS[match[2]]
    if "TMPDIR" not in environ:
        try:
            shm = os.statvfs("/dev/shm")
            roomy = shm.f_bavail * shm.f_frsize >= size
        except OSError:
            roomy = False
        if not roomy:
            environ["TMPDIR"] = tempfile.gettempdir()
    return environ


def _kill(process: subprocess.Popen[bytes]) -> None:
    # UML runs its guest processes as ptraced host children in its process group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_in_uml(
    script: str,
    *,
    timeout: float = 300.0,
    mem: str = "768M",
    env: Mapping[str, str] | None = None,
    out_dir: Path | None = None,
) -> UmlResult:
    """Boot UML, run `script` with /bin/sh as root inside it, power off.

    `env` adds variables to the script's environment. `out_dir` (a host directory, created if
    missing) becomes $UML_OUT; without it $UML_OUT is a temp dir removed on return.
    Raises UmlTimeout when boot plus script exceed `timeout` seconds, UmlError when UML fails
    before the script finished (the message carries the boot log).
    """
    kernel = _kernel()
    if isinstance(kernel, str):
        raise UmlError(kernel)
    binary, _ = kernel
    environ = _uml_environ(mem)
    with tempfile.TemporaryDirectory(prefix="kink-uml-") as tmp:
        work = Path(tmp)
        # The work dir reaches init through the kernel command line, split on whitespace.
        if re.search(r"\s", str(work)):
            raise UmlError(f"temp dir path {work} contains whitespace; set TMPDIR elsewhere")
        out = out_dir.resolve() if out_dir is not None else work / "out"
        out.mkdir(parents=True, exist_ok=True)
        (work / "env.sh").write_text(_env_file(out, env or {}))
        (work / "fstab").write_text(_fstab(work, out))
        (work / "script.sh").write_text(script)
        # Copied so that a checkout that lost the exec bit still boots.
        init = work / "init.sh"
        shutil.copyfile(_INIT_SCRIPT, init)
        init.chmod(0o755)
        command = [
            binary,
            f"mem={mem}",
            "rootfstype=hostfs",
            "rootflags=/",
            "rw",
            f"init={init}",
            "con=null",
            "con0=null,fd:1",
            "ssl=null",
            f"umid={work.name}",
            f"uml_dir={work}",
            "quiet",
            f"initcall_blacklist={','.join(_SKIPPED_INITCALLS)}",
            # Unknown key=value parameters become init's environment.
            f"KINK_UML_WORK={work}",
        ]
        with (work / _CONSOLE).open("wb") as console:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                env=environ,
                start_new_session=True,
            )
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill(process)
                raise UmlTimeout(timeout, _read(work / _OUTPUT)) from None
            finally:
                if process.returncode is None:
                    _kill(process)
        rc = _read(work / _RC).strip()
        if not rc:
            raise UmlError(
                f"UML exited ({process.returncode}) before the script finished; console:\n"
                + _read(work / _CONSOLE)
            )
        return UmlResult(returncode=int(rc), output=_read(work / _OUTPUT))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def run_pytest_in_uml(
    nodeids: Sequence[str],
    *,
    timeout: float = 300.0,
    mem: str = "768M",
) -> UmlResult:
    """Run pytest on `nodeids` inside one UML boot, with KINK_IN_UML=1.

    Kernel tests are ordinary pytest functions that call require_in_uml(); one host-side test
    calls this with their node ids and checks the returncode (0: all passed; pytest's own
    codes otherwise) and output.
    """
    args = " ".join(shlex.quote(n) for n in nodeids)
    return run_in_uml(
        f"exec python -m pytest -q -p no:cacheprovider {args}\n", timeout=timeout, mem=mem
    )
