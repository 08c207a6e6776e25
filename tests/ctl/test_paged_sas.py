"""Paged answers (kink.daemon.control_protocol): kinkd's control server sends a `sas` answer in
parts of PAGE children, the client joins them or hands them out as they come, an error may end
them, and `kinkctl sas` prints each part as it comes: an aligned table, or one JSON document
that stays JSON when the answer fails half-way."""

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import trio

from kink.ctl.cli import main
from kink.ctl.commands import sas
from kink.ctl.table import Table, table
from kink.daemon import control_protocol as cp
from kink.daemon.control import ControlServer, bind
from tests.ctl.helpers import Run
from tests.daemon.harness import short_dir

Handler = Callable[[cp.Request], Any]


def _child(n: int) -> dict[str, Any]:
    """A `sas` entry as kink.daemon.sa_report makes them."""
    return {
        "child": n,
        "peer": "b" * (1 + n % 3),
        "state": "installed",
        "initiator": True,
        "mode": "tunnel",
        "reqid": 5,
        "peer_epoch": None,
        "rekey_in": 3000.0,
        "expires_in": 7000.0,
        "age": 60.0,
        "local": {"subnet": "10.1.0.0/24", "protocol": 0, "port": 0},
        "remote": {"subnet": f"10.2.{n % 256}.0/24", "protocol": 0, "port": 0},
        "pfs_group": None,
        "life": dict.fromkeys(("soft_seconds", "hard_seconds", "soft_bytes", "hard_bytes")),
        "sas": [
            {
                "protocol": "esp",
                "spi_in": 0x1000_0000 + n,
                "spi_out": 0x2000_0000 + n,
                "enc": "aes-cbc",
                "enc_key_bits": 128,
                "icv_bits": None,
                "auth": "hmac-sha1",
                "auth_trunc_bits": 96,
                "bytes_in": n,
                "packets_in": 1,
                "bytes_out": None,
                "packets_out": None,
            }
        ],
    }


def _entries(count: int, *, fail_after: int | None = None) -> Iterator[dict[str, Any]]:
    for n in range(count):
        if n == fail_after:
            raise RuntimeError("the engine went away")
        yield _child(n)


def _request(command: str, request_id: int = 1, **args: Any) -> cp.Request:
    return cp.Request(request_id, command, args)


def test_parts_hold_a_page_each_and_only_the_last_says_no_more() -> None:
    request = _request("sas", 7, paged=True)
    lines = list(cp.encode_parts(request, {"sas": _entries(2 * cp.PAGE + 1)}))
    replies = [json.loads(line) for line in lines]
    assert [len(r["result"]["sas"]) for r in replies] == [cp.PAGE, cp.PAGE, 1]
    assert [r.get("more") for r in replies] == [True, True, None]
    assert all(r["id"] == 7 and r["ok"] is True for r in replies)
    joined = [c for r in replies for c in r["result"]["sas"]]
    assert joined == [_child(n) for n in range(2 * cp.PAGE + 1)]


@pytest.mark.parametrize("count", [0, 1, cp.PAGE])
def test_a_page_or_less_is_one_answer(count: int) -> None:
    (line,) = cp.encode_parts(_request("sas", paged=True), {"sas": _entries(count)})
    reply = json.loads(line)
    assert "more" not in reply and len(reply["result"]["sas"]) == count


def test_unasked_or_other_commands_are_never_paged() -> None:
    """A client of the protocol before parts (one response per request) gets one."""
    (line,) = cp.encode_parts(_request("sas"), {"sas": _entries(3 * cp.PAGE)})
    assert json.loads(line)["result"] == {"sas": [_child(n) for n in range(3 * cp.PAGE)]}
    big = list(range(3 * cp.PAGE))
    (line,) = cp.encode_parts(_request("peers", paged=True), {"peers": big})
    assert json.loads(line)["result"] == {"peers": big}


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[tuple[str, list[Handler]]]:
    """A control server whose handler is the last one the test put in the list."""
    handlers: list[Handler] = []

    async def handle(request: cp.Request) -> dict[str, Any]:
        result: dict[str, Any] = handlers[-1](request)
        return result

    with short_dir() as d:
        path = d / "kinkd.sock"
        control = ControlServer(bind(path, None), path, handle)
        nursery.start_soon(control.serve)
        yield str(path), handlers


async def _in_thread(fn: Callable[[], Any]) -> Any:
    return await trio.to_thread.run_sync(fn)


@pytest.mark.trio
async def test_the_client_joins_parts_or_hands_them_out(
    server: tuple[str, list[Handler]],
) -> None:
    path, handlers = server
    count = 2 * cp.PAGE + 10

    def ask() -> tuple[dict[str, Any], list[int], dict[str, Any]]:
        with cp.ControlClient(path) as client:
            joined = client.request("sas")
            sizes = [len(part["sas"]) for part in client.parts("sas")]
            after = client.request("status")  # the connection goes on after a paged answer
            return joined, sizes, after

    handlers.append(lambda request: {"sas": _entries(count)} if request.command == "sas" else {})
    joined, sizes, after = await _in_thread(ask)
    assert joined == {"sas": [_child(n) for n in range(count)]}
    assert sizes == [cp.PAGE, cp.PAGE, 10] and after == {}


@pytest.mark.trio
async def test_an_error_after_parts_is_the_answer(server: tuple[str, list[Handler]]) -> None:
    path, handlers = server
    # kinkd makes a part once it knows whether more follow: the failure in the third page
    # comes after the first part.
    handlers.append(lambda request: {"sas": _entries(3 * cp.PAGE, fail_after=2 * cp.PAGE + 5)})

    def ask() -> tuple[list[int], cp.ControlError]:
        with cp.ControlClient(path) as client:
            sizes: list[int] = []
            with pytest.raises(cp.ControlError) as failed:
                for part in client.parts("sas"):
                    sizes.append(len(part["sas"]))
            return sizes, failed.value

    sizes, error = await _in_thread(ask)
    assert sizes == [cp.PAGE] and error.code == cp.ERR_INTERNAL


async def _kinkctl(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    code = await trio.to_thread.run_sync(main, list(argv))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


@pytest.mark.trio
async def test_kinkctl_prints_every_part(
    server: tuple[str, list[Handler]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, handlers = server
    count = cp.PAGE + 3
    handlers.append(lambda request: {"sas": _entries(count)})
    run = await _kinkctl(capsys, "--socket", path, "sas", "--json")
    assert run.code == 0 and run.err == ""
    assert json.loads(run.out) == {"sas": [_child(n) for n in range(count)]}
    assert len(run.out.splitlines()) == count + 2  # one bundle a line
    run = await _kinkctl(capsys, "--socket", path, "sas")
    assert run.code == 0
    # The first part as a table of its own; the second's child numbers widen column SA.
    first = table(sas._HEADERS, sas.rows(_child(n) for n in range(cp.PAGE)), sas._RIGHT)
    streamed = Table(sas._HEADERS, sas._RIGHT)
    streamed.lines(sas.rows(_child(n) for n in range(cp.PAGE)))
    rest = streamed.lines(sas.rows(_child(n) for n in range(cp.PAGE, count)))
    assert run.out.splitlines() == first + rest
    assert len(rest) == 3 and rest[0].index("1000") > first[-1].index(" 999")


@pytest.mark.trio
async def test_kinkctl_json_stays_json_when_the_answer_fails(
    server: tuple[str, list[Handler]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, handlers = server
    handlers.append(lambda request: {"sas": _entries(3 * cp.PAGE, fail_after=2 * cp.PAGE + 5)})
    run = await _kinkctl(capsys, "--socket", path, "sas", "--json")
    assert run.code == 1
    document = json.loads(run.out)
    assert document["sas"] == [_child(n) for n in range(cp.PAGE)]
    assert document["error"] == cp.ERR_INTERNAL and "daemon's log" in document["message"]
    assert run.err.startswith("kinkctl: kinkd refused sas:")


@pytest.mark.trio
async def test_kinkctl_says_when_there_is_none(
    server: tuple[str, list[Handler]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, handlers = server
    handlers.append(lambda request: {"sas": []})
    assert (await _kinkctl(capsys, "--socket", path, "sas")).out == "no SAs\n"
    assert json.loads((await _kinkctl(capsys, "--socket", path, "sas", "--json")).out) == {
        "sas": []
    }


def test_a_table_printed_in_batches_widens_and_never_narrows() -> None:
    streamed = Table(("A", "NUMBER"), right=(1,))
    first = streamed.lines([("x", "1"), ("yy", "22")])
    second = streamed.lines([("zzzz", "3")])
    third = streamed.lines([("w", "4")])
    assert first == ["A   NUMBER", "x        1", "yy      22"]
    assert second == ["zzzz       3"]  # a wider cell widens its column from here on
    assert third == ["w          4"]
    assert table(("A", "NUMBER"), [("x", "1"), ("yy", "22")], (1,)) == first
