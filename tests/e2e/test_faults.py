"""The fault scenarios of issue 10: tests/e2e/faults.py inside one boot of user-mode Linux, on
the end-to-end harness (tests/support/e2e.py, tests/support/e2e_faults.py)."""

import re

import pytest

from tests.support import uml

pytestmark = pytest.mark.uml


def test_faults_in_uml() -> None:
    uml.require_uml()
    result = uml.run_pytest_in_uml(["tests/e2e/faults.py"], timeout=600, mem="1024M")
    assert result.returncode == 0, result.output
    # Every scenario must pass: none is skipped or marked as a known failure.
    assert " passed" in result.output, result.output
    assert not re.search(r"\d+ (failed|xfailed|xpassed|skipped|error)", result.output), (
        result.output
    )
