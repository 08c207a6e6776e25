"""The key locator: every way TOML 1.0 defines a key maps to the right line."""

import tomllib
from pathlib import Path

import pytest

from kink.daemon.toml_lines import KeyPath, format_path, key_lines, line_of


def lines(text: str) -> dict[KeyPath, int]:
    tomllib.loads(text)  # the locator only ever sees valid TOML
    return key_lines(text)


def test_tables_and_keys() -> None:
    found = lines(
        '# comment\n[daemon]\nuser = "kink"\n\nport = 910 # trailing\n[peers.gw]\na = 1\n'
    )
    assert found == {
        ("daemon",): 2,
        ("daemon", "user"): 3,
        ("daemon", "port"): 5,
        ("peers",): 6,
        ("peers", "gw"): 6,
        ("peers", "gw", "a"): 7,
    }


def test_dotted_keys_note_their_implicit_tables() -> None:
    found = lines('top = 1\n[peers]\ngw.address = "192.0.2.2"\ngw . port=1\n')
    assert found[("peers", "gw")] == 3
    assert found[("peers", "gw", "address")] == 3
    assert found[("peers", "gw", "port")] == 4
    assert found[("top",)] == 1


def test_quoted_keys() -> None:
    text = '["peers"."a b".\'c.d\']\n"x\\u0041\\"y" = 1\n\'lit\\eral\' = 2\n"" = 3\n'
    found = lines(text)
    assert found[("peers", "a b", "c.d")] == 1
    assert found[("peers", "a b", "c.d", 'xA"y')] == 2
    assert found[("peers", "a b", "c.d", "lit\\eral")] == 3
    assert found[("peers", "a b", "c.d", "")] == 4


def test_whitespace_inside_headers() -> None:
    found = lines("[ a . b ]\nx = 1\n[[ c . d ]]\ny = 2\n")
    assert found[("a", "b", "x")] == 2
    assert found[("c", "d", 0, "y")] == 4


def test_arrays_of_tables_are_indexed() -> None:
    text = (
        "[peers.gw]\n"  # 1
        'address = "192.0.2.2"\n'  # 2
        "[[peers.gw.proposals]]\n"  # 3
        'esp.encryption = "aes-gcm"\n'  # 4
        "[[peers.gw.proposals]]\n"  # 5
        "[peers.gw.proposals.esp]\n"  # 6
        'encryption = "aes-cbc"\n'  # 7
        "[peers.gw.proposals.ah]\n"  # 8
        'integrity = "sha1"\n'  # 9
        "[peers.other]\n"  # 10
        "[[peers.other.proposals]]\n"  # 11
        "ah = {}\n"  # 12
    )
    found = lines(text)
    proposals = ("peers", "gw", "proposals")
    assert found[proposals] == 3
    assert found[(*proposals, 0)] == 3
    assert found[(*proposals, 0, "esp")] == 4
    assert found[(*proposals, 0, "esp", "encryption")] == 4
    assert found[(*proposals, 1)] == 5
    assert found[(*proposals, 1, "esp")] == 6
    assert found[(*proposals, 1, "esp", "encryption")] == 7
    assert found[(*proposals, 1, "ah", "integrity")] == 9
    assert found[("peers", "other", "proposals", 0, "ah")] == 12


def test_nested_arrays_of_tables_restart_per_parent() -> None:
    text = (
        "[[fruit]]\n"  # 1
        'name = "apple"\n'  # 2
        "[fruit.physical]\n"  # 3
        'color = "red"\n'  # 4
        "[[fruit.variety]]\n"  # 5
        'name = "red delicious"\n'  # 6
        "[[fruit.variety]]\n"  # 7
        'name = "granny smith"\n'  # 8
        "[[fruit]]\n"  # 9
        'name = "banana"\n'  # 10
        "[[fruit.variety]]\n"  # 11
        'name = "plantain"\n'  # 12
    )
    found = lines(text)
    assert found[("fruit", 0, "physical", "color")] == 4
    assert found[("fruit", 0, "variety", 1, "name")] == 8
    assert found[("fruit", 1, "name")] == 10
    assert found[("fruit", 1, "variety", 0)] == 11
    assert found[("fruit", 1, "variety", 0, "name")] == 12
    assert ("fruit", 1, "variety", 1) not in found


def test_inline_tables_and_arrays() -> None:
    text = (
        "[peers.gw]\n"  # 1
        "proposals = [\n"  # 2
        "  # first\n"  # 3
        '  { esp = { encryption = "aes-gcm", key_length = 256 } },\n'  # 4
        "\n"  # 5
        '  { ah = { integrity = "sha1" }, esp.encryption = "null" },\n'  # 6
        "]\n"  # 7
        'subnets = ["10.0.0.0/8",\n  "10.1.0.0/16"]\n'  # 8-9
        "empty = {}\n"  # 10
        "nested = [[1, 2], [3]]\n"  # 11
    )
    found = lines(text)
    proposals = ("peers", "gw", "proposals")
    assert found[proposals] == 2
    assert found[(*proposals, 0)] == 4
    assert found[(*proposals, 0, "esp", "key_length")] == 4
    assert found[(*proposals, 1, "ah", "integrity")] == 6
    assert found[(*proposals, 1, "esp", "encryption")] == 6
    assert found[("peers", "gw", "subnets", 1)] == 9
    assert found[("peers", "gw", "empty")] == 10
    assert found[("peers", "gw", "nested", 1, 0)] == 11


def test_strings_hide_structure() -> None:
    text = (
        'a = "x = [y] # z"\n'  # 1
        "b = '''\n"  # 2
        "[not.a.table]\n"  # 3
        "c = 1'''\n"  # 4
        'd = """\n'  # 5
        'e = \\""" still inside ""\n'  # 6
        'f = 2"""""\n'  # 7: ends with two quotes in the content
        "g = '''it''''\n"  # 8
        'h = "escaped \\" quote"\n'  # 9
        'i = """line \\\n'  # 10: line-ending backslash
        '  continued"""\n'  # 11
        "j = 1\n"  # 12
    )
    found = lines(text)
    assert found == {
        ("a",): 1,
        ("b",): 2,
        ("d",): 5,
        ("g",): 8,
        ("h",): 9,
        ("i",): 10,
        ("j",): 12,
    }


def test_scalars_of_every_kind() -> None:
    text = (
        "a = 1979-05-27 07:32:00Z\n"
        "b = 1979-05-27T00:32:00.999999-07:00\n"
        "c = 07:32:00\n"
        "d = -inf\n"
        "e = 0x4B49_0000\n"
        "f = [true,false,1e3]\n"
        "g = 1\r\n"
        "h = 2\r\n"
    )
    found = lines(text)
    assert [found[(k,)] for k in "abcdefgh"] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert found[("f", 2)] == 6


def test_the_document_is_trusted_not_guessed() -> None:
    with pytest.raises(ValueError, match="line 2"):
        key_lines("a = 1\n= 2\n")
    with pytest.raises(ValueError, match="unterminated"):
        key_lines('a = "open\n')


def test_line_of_falls_back_to_the_table() -> None:
    found = lines("[daemon]\nuser = 'x'\n[peers.gw]\n")
    assert line_of(found, ("daemon", "user")) == 2
    assert line_of(found, ("peers", "gw", "address")) == 3
    assert line_of(found, ("defaults", "mode")) is None


def test_format_path() -> None:
    assert format_path(("peers", "gw", "proposals", 0, "esp")) == "peers.gw.proposals[0].esp"
    assert format_path(("peers", "a.b", "x y", 'q"')) == 'peers."a.b"."x y"."q\\""'
    assert format_path(("listen", 2)) == "listen[2]"


def _paths(value: object, prefix: KeyPath = ()) -> list[KeyPath]:
    """Every key path and array index tomllib produced."""
    out: list[KeyPath] = []
    if isinstance(value, dict):
        for key, item in value.items():
            out += [(*prefix, key), *_paths(item, (*prefix, key))]
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += [(*prefix, index), *_paths(item, (*prefix, index))]
    return out


def test_every_key_of_the_example_is_found_on_its_line() -> None:
    example = Path(__file__).resolve().parents[2] / "kink.toml.example"
    text = example.read_text()
    found = lines(text)
    source = text.splitlines()
    paths = _paths(tomllib.loads(text))
    assert len(paths) > 70
    assert set(found) == set(paths)
    for path in paths:
        if isinstance(path[-1], str):  # the key is written on its line
            assert path[-1] in source[found[path] - 1], path
