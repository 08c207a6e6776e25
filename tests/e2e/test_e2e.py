"""The end-to-end suite (issue 7): tests/e2e/scenarios.py inside one boot of user-mode Linux,
where two hosts run kinkd (as nobody) and kink-privsep (as root) in network namespaces and a
real KDC serves the realm (tests/support/e2e.py)."""

import pytest

from tests.support import uml

pytestmark = pytest.mark.uml


def test_scenarios_in_uml() -> None:
    uml.require_uml()
    result = uml.run_pytest_in_uml(["tests/e2e/scenarios.py"], timeout=900, mem="1024M")
    assert result.returncode == 0, result.output
    assert " passed" in result.output and "failed" not in result.output, result.output
