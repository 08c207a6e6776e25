"""The UML harness itself: exit status, output, environment, $UML_OUT, concurrency, timeouts,
kernel crashes, and pytest run inside UML."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.uml import (
    REPO_ROOT,
    UmlError,
    UmlResult,
    UmlTimeout,
    require_in_uml,
    require_uml,
    run_in_uml,
    run_pytest_in_uml,
)

pytestmark = pytest.mark.uml


def _leftover_uml_processes() -> list[int]:
    """Host pids of UML processes whose run is over: their work dir (uml_dir=) is gone.

    Runs in other tests or processes still have theirs, so they do not count."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for arg in args:
            work = arg.removeprefix(b"uml_dir=")
            if work != arg and not Path(os.fsdecode(work)).exists():
                pids.append(int(entry.name))
    return pids


def test_exit_status_and_output_come_back() -> None:
    require_uml()
    result = run_in_uml('echo "to stdout"; echo "to stderr" >&2; exit 3')
    assert result == UmlResult(returncode=3, output="to stdout\nto stderr\n")


def test_script_environment() -> None:
    require_uml()
    result = run_in_uml(
        'echo "cwd=$(pwd)"; echo "in_uml=$KINK_IN_UML"; echo "extra=$EXTRA"\n'
        "command -v python\n"
        # Fresh tmpfs: the host's /tmp (holding this run's work dir) is not visible as such.
        "findmnt -n -o FSTYPE /tmp\n"
        "grep -o '^esp4 ' /proc/modules\n",
        env={"EXTRA": "it's here"},
    )
    assert result.returncode == 0, result.output
    assert result.output.splitlines() == [
        f"cwd={REPO_ROOT}",
        "in_uml=1",
        "extra=it's here",
        f"{REPO_ROOT}/.venv/bin/python",
        "tmpfs",
        "esp4 ",
    ]


def test_uml_out_is_shared_with_the_host(tmp_path: Path) -> None:
    require_uml()
    # tmp_path lies under the host's /tmp, which UML covers with its own tmpfs.
    result = run_in_uml('echo "written inside" > "$UML_OUT/result"', out_dir=tmp_path)
    assert result.returncode == 0, result.output
    assert (tmp_path / "result").read_text() == "written inside\n"


def test_concurrent_runs_stay_apart() -> None:
    require_uml()
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = [pool.submit(run_in_uml, f"echo run{n}; exit {n}") for n in (4, 5)]
        results = [r.result() for r in runs]
    assert results == [UmlResult(4, "run4\n"), UmlResult(5, "run5\n")]


def test_timeout_kills_uml() -> None:
    require_uml()
    with pytest.raises(UmlTimeout) as excinfo:
        run_in_uml("echo started; exec sleep 600", timeout=10)
    assert excinfo.value.output == "started\n"
    assert _leftover_uml_processes() == []


def test_kernel_crash_is_an_error_with_the_console_log() -> None:
    require_uml()
    with pytest.raises(UmlError, match="Kernel panic"):
        run_in_uml("echo c > /proc/sysrq-trigger")


def test_kernel_side_of_run_pytest_in_uml() -> None:
    """Runs only inside UML, started by the test below."""
    require_in_uml()
    assert Path("/sys/module/esp4").is_dir()
    assert Path("/sys/module/xfrm_user").is_dir()


def test_run_pytest_in_uml() -> None:
    require_uml()
    nodeid = f"{Path(__file__).relative_to(REPO_ROOT)}::test_kernel_side_of_run_pytest_in_uml"
    result = run_pytest_in_uml([nodeid])
    assert result.returncode == 0, result.output
    assert "1 passed" in result.output
