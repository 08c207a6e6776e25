"""The Python layouts of kink_privsep.xfrm against the C ones of the installed <linux/xfrm.h>."""

import shutil
import subprocess
from pathlib import Path

import pytest

from kink_privsep import netlink, xfrm

CONSTANTS = [
    name
    for name in dir(xfrm)
    if name.startswith(("XFRM_MSG_", "XFRMA_", "XFRMGRP_")) or name == "NETLINK_XFRM"
]


def _c_program() -> str:
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <linux/netlink.h>",
        "#include <linux/xfrm.h>",
        "int main(void) {",
    ]
    for layout in xfrm.LAYOUTS:
        t = layout.c_type
        lines.append(f'printf("{t}|sizeof|%zu\\n", sizeof({t}));')
        for member in layout.offsets:
            lines.append(f'printf("{t}|{member}|%zu\\n", offsetof({t}, {member}));')
    lines.append('printf("struct nlmsghdr|sizeof|%zu\\n", sizeof(struct nlmsghdr));')
    lines.append('printf("struct nlattr|sizeof|%zu\\n", sizeof(struct nlattr));')
    for name in CONSTANTS:
        lines.append(f'printf("const|{name}|%ld\\n", (long){name});')
    lines += ["return 0;", "}"]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], int]:
    if shutil.which("gcc") is None or not Path("/usr/include/linux/xfrm.h").exists():
        pytest.fail("gcc and linux-libc-dev are required (scripts/bootstrap installs them)")
    d = tmp_path_factory.mktemp("layout")
    (d / "layout.c").write_text(_c_program())
    subprocess.run(["gcc", "-Wall", "-o", str(d / "layout"), str(d / "layout.c")], check=True)
    out = subprocess.run([str(d / "layout")], check=True, capture_output=True, text=True).stdout
    table = {}
    for line in out.splitlines():
        kind, member, value = line.split("|")
        table[(kind, member)] = int(value)
    return table


@pytest.mark.parametrize("layout", xfrm.LAYOUTS, ids=lambda lay: lay.c_type)
def test_struct_size_and_offsets(layout: xfrm.Layout, c_layout: dict[tuple[str, str], int]) -> None:
    assert layout.size == c_layout[(layout.c_type, "sizeof")]
    for member, offset in layout.offsets.items():
        assert offset == c_layout[(layout.c_type, member)], member


def test_netlink_headers(c_layout: dict[tuple[str, str], int]) -> None:
    assert netlink.NLMSG_HDR.size == c_layout[("struct nlmsghdr", "sizeof")]
    assert netlink.NLA_HDR.size == c_layout[("struct nlattr", "sizeof")]


def test_constants(c_layout: dict[tuple[str, str], int]) -> None:
    assert len(CONSTANTS) > 20
    for name in CONSTANTS:
        assert getattr(xfrm, name) == c_layout[("const", name)], name
