"""The helper on a kernel with ESP and AH: tests/privsep/uml_cases.py, run inside one boot of
user-mode Linux (tests/support/uml.py)."""

from tests.support import uml


def test_in_uml() -> None:
    uml.require_uml()
    result = uml.run_pytest_in_uml(["tests/privsep/uml_cases.py"], timeout=900)
    assert result.returncode == 0, result.output
    assert " passed" in result.output and "failed" not in result.output
