"""The chroot of test_install.py comes from the mirror this machine's apt names, in either
form of sources.list(5)."""

from pathlib import Path

from tests.packaging.chroot import debian_mirror


def _apt(tmp_path: Path, files: dict[str, str]) -> Path:
    (tmp_path / "sources.list.d").mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def test_one_line_sources(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        {
            "sources.list": "# deb http://old.example/debian bookworm main\n"
            "deb-src http://src.example/debian bookworm main\n"
            "deb [arch=amd64 signed-by=/k.gpg] http://security.example/ bookworm-security main\n"
            "deb http://mirror.example/debian/ bookworm contrib main # the mirror\n",
        },
    )
    assert debian_mirror(apt) == "http://mirror.example/debian"


def test_deb822_sources(tmp_path: Path) -> None:
    apt = _apt(
        tmp_path,
        {
            "sources.list.d/a.sources": "Types: deb\nURIs: http://off.example/debian\n"
            "Suites: bookworm\nComponents: main\nEnabled: no\n\n"
            "# a comment\nTypes: deb-src deb\nURIs: http://mirror.example/debian\n"
            "Suites: bookworm-updates\n bookworm\nComponents: main\n",
            "sources.list.d/b.list.disabled": "deb http://no.example/debian bookworm main\n",
        },
    )
    assert debian_mirror(apt) == "http://mirror.example/debian"


def test_no_bookworm_main(tmp_path: Path) -> None:
    apt = _apt(tmp_path, {"sources.list": "deb http://mirror.example/debian bookworm contrib\n"})
    assert debian_mirror(apt) is None
