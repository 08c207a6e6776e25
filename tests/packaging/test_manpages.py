"""The man pages are generated from the programs' parsers and kink.toml.example, checked
against the keys the configuration loader accepts; they render without groff warnings."""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from kink.ctl.cli import build_parser
from kink.daemon.config import DAEMON_KEYS
from kink.daemon.config_peers import PEER_KEYS
from kink.daemon.config_proposals import AH_KEYS, ESP_KEYS, PROPOSAL_KEYS
from tests.packaging.conftest import PACKAGING, ROOT

PAGES = ("kinkd.8", "kinkctl.8", "kink-privsep.8", "kink.toml.5")


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("man")
    subprocess.run([sys.executable, str(PACKAGING / "gen_man.py"), str(out)], check=True)
    return {name: (out / name).read_text() for name in PAGES}


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    """Every option string but -h/--help (argparse's, the same in every program)."""
    return [
        flag
        for action in parser._actions  # argparse has no public API to list its arguments
        if not isinstance(action, argparse._HelpAction)
        for flag in action.option_strings
    ]


def test_every_option_is_in_its_page(pages: dict[str, str], gen_man: ModuleType) -> None:
    from kink.daemon import main as kinkd
    from kink_privsep import main as privsep

    programs = {
        "kinkd.8": gen_man.parser_of(kinkd.parse_args),
        "kink-privsep.8": gen_man.parser_of(privsep.parse_args),
        "kinkctl.8": build_parser(),
    }
    for page, parser in programs.items():
        for flag in _flags(parser):
            assert f"\\fB{gen_man.roff(flag)}\\fR" in pages[page], (page, flag)


def test_every_kinkctl_command_is_in_the_page(pages: dict[str, str], gen_man: ModuleType) -> None:
    commands = gen_man._subparsers(build_parser())
    assert commands
    for name, child in commands.items():
        assert f'.SS "{gen_man.roff(name)}"' in pages["kinkctl.8"]
        for flag in _flags(child):
            assert f"\\fB{gen_man.roff(flag)}\\fR" in pages["kinkctl.8"], (name, flag)


def test_every_configuration_key_is_in_kink_toml_5(pages: dict[str, str]) -> None:
    """Each key heads an entry of its own (.TP), or shares one with the key above (.TQ)."""
    page = pages["kink.toml.5"]
    for key in {*DAEMON_KEYS, *PEER_KEYS, *PROPOSAL_KEYS, *ESP_KEYS, *AH_KEYS}:
        head = f"\\fB{key}\\fR"
        assert f".TP\n{head}" in page or f".TQ\n{head}" in page, key


def test_an_undocumented_key_stops_the_generation(gen_man: ModuleType) -> None:
    example = (ROOT / "kink.toml.example").read_text()
    comment = "# Octets of our nonces (8 to 256, RFC 2409 §5).\n"
    without = example.replace(f"{comment}nonce_length = 16\n", "")
    assert without != example
    with pytest.raises(gen_man.ManPageError, match="nonce_length"):
        gen_man.checked_groups(without)
    unexplained = example.replace(comment, "\n")
    with pytest.raises(gen_man.ManPageError, match="no comment for daemon key 'nonce_length'"):
        gen_man.checked_groups(unexplained)
    unknown = example.replace("nonce_length = 16\n", "nonce_length = 16\nnonce_size = 16\n")
    with pytest.raises(gen_man.ManPageError, match="nonce_size"):
        gen_man.checked_groups(unknown)


def test_an_option_without_help_stops_the_generation(gen_man: ModuleType) -> None:
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--quiet", action="store_true")
    with pytest.raises(gen_man.ManPageError, match="--quiet"):
        gen_man.options(parser, {})
    assert gen_man.options(parser, {"quiet": "say less"})[0].text == "say less"


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("name", PAGES)
def test_pages_render_without_warnings(pages: dict[str, str], name: str, tmp_path: Path) -> None:
    (tmp_path / name).write_text(pages[name])
    done = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(tmp_path / name)],
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stderr) == (0, "")
