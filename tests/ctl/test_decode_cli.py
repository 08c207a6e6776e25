"""`kinkctl decode` on the racoon2 captures: every message listed, every Cksum verified and
every KINK_ENCRYPT decrypted with the responder's keytab, the KEYMAT equal to the keys the
kernel got, KRB-ERRORs named; the JSON form states the same facts; bad input exits 1."""

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ctl.helpers import (
    BASIC_FRAMES,
    CAPTURES,
    HOST_A_KEYTAB,
    HOST_B_KEYTAB,
    INITIATOR,
    KERNEL_KEYS,
    KRBERR_FRAMES,
    RESPONDER,
    SESSION_KEYS,
    pcapng,
    run,
)
from tests.wire.captures import datagrams

_HEADER = re.compile(r"^#(\d+)  (\S+)  (\S+) -> (\S+)  (\w+) xid=(\d+) len=(\d+) (.*)$")
_KEYMAT = re.compile(r"^  KEYMAT ESP spi=([0-9a-f]{8}) (\S+) -> (\S+) \(inbound at the (\w+)\)")
_ENC = re.compile(r"^    enc  cbc\(aes\) ([0-9a-f]+)$")
_AUTH = re.compile(r"^    auth hmac\(sha1\) trunc=96 ([0-9a-f]+)$")


def headers(out: str) -> list[re.Match[str]]:
    found = [_HEADER.match(line) for line in out.splitlines() if line.startswith("#")]
    assert all(found), out
    return [m for m in found if m is not None]


def keymat_of_text(out: str) -> dict[str, tuple[str, str, str, str, str]]:
    """SPI -> (src, dst, inbound peer, enc key, auth key) from the KEYMAT blocks."""
    lines = out.splitlines()
    found = {}
    for i, line in enumerate(lines):
        m = _KEYMAT.match(line)
        if m is None:
            continue
        enc, auth = _ENC.match(lines[i + 1]), _AUTH.match(lines[i + 2])
        assert enc is not None and auth is not None, lines[i : i + 3]
        found[m[1]] = (m[2], m[3], m[4], enc[1], auth[1])
    return found


def walk(node: Any) -> list[dict[str, Any]]:
    """Every JSON object inside node, depth first."""
    if isinstance(node, dict):
        return [node, *(o for v in node.values() for o in walk(v))]
    if isinstance(node, list):
        return [o for v in node for o in walk(v)]
    return []


def test_basic_capture_opens_entirely(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "decode", "--keytab", HOST_B_KEYTAB, CAPTURES["basic"])
    assert (result.code, result.err) == (0, "")
    heads = headers(result.out)
    assert [int(h[1]) for h in heads] == BASIC_FRAMES
    types = "CREATE REPLY STATUS REPLY STATUS REPLY CREATE REPLY DELETE REPLY"
    assert [h[5] for h in heads] == types.split()
    assert [int(h[6]) for h in heads] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert heads[0][2] == "2026-11-27T06:26:46.796Z"
    assert (heads[0][3], heads[0][4]) == (f"{INITIATOR}:910", f"{RESPONDER}:910")
    # Commands verify with their own ticket's key, replies with the key of their command.
    for head in heads:
        if head[5] == "REPLY":
            assert head[8].startswith("answers=") and "(verified with the key of #" in head[8]
        else:
            assert head[8] == "cksum=12 (verified)"
    assert result.out.count("KINK_ENCRYPT") == result.out.count("(decrypted)") == 6
    assert "not decrypted" not in result.out and "BAD" not in result.out
    assert "breaks RFC 4430" not in result.out
    assert result.out.count(f"session-key {SESSION_KEYS['basic']}") == 5
    assert "D ESP spis=09a1728e" in result.out and "D ESP spis=0aef87f8" in result.out


def test_basic_capture_keymat_is_what_the_kernel_got(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "decode", "--keytab", HOST_B_KEYTAB, CAPTURES["basic"])
    keymat = keymat_of_text(result.out)
    assert {spi: (enc, auth) for spi, (*_, enc, auth) in keymat.items()} == KERNEL_KEYS
    # The SPI in a side's SA payload is the one it receives on (RFC 4430 §7).
    to_initiator = (RESPONDER, INITIATOR, "initiator")
    to_responder = (INITIATOR, RESPONDER, "responder")
    assert keymat["0223b6e6"][:3] == keymat["09a1728e"][:3] == to_initiator
    assert keymat["05833150"][:3] == keymat["0aef87f8"][:3] == to_responder
    assert "AES-CBC key-length=128 auth=HMAC-SHA1 prf=literal" in result.out


def test_truncated_prf_gives_the_mit_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """--aes-prf truncated: the RFC 3962/MIT PRF, which decoded-a.txt lists ("RFC3962 PRF
    KEYMAT") and which the kernel did not get."""
    result = run(
        capsys, "decode", "--aes-prf", "truncated", "--keytab", HOST_B_KEYTAB, CAPTURES["basic"]
    )
    spi = keymat_of_text(result.out)["0223b6e6"]
    material = "ee80527baeaadd4e0b8a646e010545c181f052c0f051e1baef87a566879268d9e2d1201c"
    assert spi[3:] == (material[:32], material[32:72])
    assert "prf=truncated" in result.out


def test_krberr_capture(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "decode", "--keytab", HOST_B_KEYTAB, CAPTURES["krberr"])
    assert result.code == 0
    heads = headers(result.out)
    assert [int(h[1]) for h in heads] == KRBERR_FRAMES
    for head in heads:
        if head[5] == "CREATE":
            assert head[8] == "cksum=12 (verified)"
        else:
            assert head[5] == "REPLY" and head[8] == f"answers=CREATE#{int(head[1]) - 1} cksum=none"
    error = (
        'KINK_KRB_ERROR error-code=44 KRB_AP_ERR_BADKEYVER e-text="Key version is not available"'
    )
    assert result.out.count(error) == 5
    assert f"{error} stime=2026-11-27T06:25:23Z server=" in result.out  # frame 6
    assert "server=kink/host-b.example.test@EXAMPLE.TEST" in result.out
    assert result.out.count("(decrypted)") == 5
    assert "KEYMAT" not in result.out  # no REPLY carried an SA
    assert result.out.count(f"session-key {SESSION_KEYS['krberr']}") == 5


@pytest.mark.parametrize("scenario", ["basic", "krberr"])
def test_json_states_the_same_facts(scenario: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = run(capsys, "decode", "--keytab", HOST_B_KEYTAB, CAPTURES[scenario]).out
    result = run(capsys, "decode", "--json", "--keytab", HOST_B_KEYTAB, CAPTURES[scenario])
    assert result.code == 0
    document = json.loads(result.out)
    assert document["capture_fault"] is None
    messages = document["messages"]
    heads = headers(text)
    assert len(messages) == len(heads)
    for msg, head in zip(messages, heads, strict=True):
        assert (msg["frame"], msg["timestamp"], msg["src"], msg["dst"]) == (
            int(head[1]),
            head[2],
            head[3],
            head[4],
        )
        assert (msg["type"], msg["xid"], msg["length"]) == (head[5], int(head[6]), int(head[7]))
        assert msg["error"] is None and msg["rules_violation"] is None
        status = {"verified": "(verified", "absent": "cksum=none"}[msg["cksum"]]
        assert status in head[8]
        if msg["answers"] is not None:
            assert f"answers={msg['answers']['type']}#{msg['answers']['frame']}" in head[8]
    objects = walk(messages)
    keymat = {
        sa["spi"]: (sa["src"], sa["dst"], sa["inbound"], sa["enc_key"], sa["auth_key"])
        for sa in objects
        if "enc_key" in sa
    }
    assert keymat == keymat_of_text(text)
    encrypts = [o for o in objects if o.get("payload") == "KINK_ENCRYPT"]
    assert encrypts and all(o["status"] == "decrypted" for o in encrypts)
    assert text.count("(decrypted)") == len(encrypts)
    keys = {o["key"] for o in objects if "key" in o and "enctype" in o}
    assert keys == {SESSION_KEYS[scenario]}
    krb_errors = [o for o in objects if o.get("payload") == "KINK_KRB_ERROR"]
    assert text.count("KINK_KRB_ERROR") == len(krb_errors)
    for error in krb_errors:
        assert (error["error_code"], error["error_name"]) == (44, "KRB_AP_ERR_BADKEYVER")
        assert error["e_text"] == "Key version is not available"
    nonces = [o["data"] for o in objects if o.get("isakmp") == "NONCE"]
    assert nonces and all(f"NONCE 16 octets {n}" in text for n in nonces)


@pytest.mark.parametrize("scenario", ["basic", "krberr"])
def test_without_keytab_only_the_structure(
    scenario: str, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run(capsys, "decode", CAPTURES[scenario])
    assert result.code == 0
    assert len(headers(result.out)) == len(BASIC_FRAMES if scenario == "basic" else KRBERR_FRAMES)
    assert "ticket not decrypted: no --keytab given" in result.out
    assert "(decrypted)" not in result.out and "KEYMAT" not in result.out
    assert "session-key" not in result.out and "(verified" not in result.out
    secrets = [SESSION_KEYS[scenario], *(k for pair in KERNEL_KEYS.values() for k in pair)]
    assert not any(secret in result.out for secret in secrets)
    as_json = run(capsys, "decode", "--json", CAPTURES[scenario]).out
    assert not any(secret in as_json for secret in secrets)
    objects = walk(json.loads(as_json))
    assert all(o["cksum"] in ("not checked", "absent") for o in objects if "cksum" in o)
    assert not any("enc_key" in o or "session_key" in o for o in objects)
    if scenario == "krberr":  # a KRB-ERROR is not secret: decoded without a keytab
        assert "KRB_AP_ERR_BADKEYVER" in result.out


def test_keytabs_are_tried_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    both = run(
        capsys, "decode", "--keytab", HOST_A_KEYTAB, "--keytab", HOST_B_KEYTAB, CAPTURES["basic"]
    )
    assert both.out.count("(verified") == len(BASIC_FRAMES)
    assert f"ticket keytab={HOST_B_KEYTAB} " in both.out
    wrong = run(capsys, "decode", "--keytab", HOST_A_KEYTAB, CAPTURES["basic"])
    assert wrong.code == 0
    assert f"{HOST_A_KEYTAB}: no key for the ticket's server principal" in wrong.out
    assert "(verified" not in wrong.out and "KEYMAT" not in wrong.out


def test_raw_single_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create, reply = datagrams("basic")[5], datagrams("basic")[6]
    (tmp_path / "create").write_bytes(create)
    (tmp_path / "reply").write_bytes(reply)
    result = run(capsys, "decode", "--keytab", HOST_B_KEYTAB, str(tmp_path / "create"))
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == "#1  CREATE xid=0 len=852 cksum=12 (verified)"
    assert "Proposal #1 ESP spi=0223b6e6" in result.out and "(decrypted)" in result.out
    # A REPLY alone: no command gives it a key.
    result = run(capsys, "decode", "--keytab", HOST_B_KEYTAB, str(tmp_path / "reply"))
    assert result.code == 0
    assert (
        result.out.splitlines()[0]
        == "#1  REPLY xid=0 len=220 cksum=12 (not checked: no session key)"
    )


@pytest.mark.parametrize(
    "content",
    [b"", b"hello, this is not a capture\n", b"\xd4\xc3\xb2\xa1\x02\x00", bytes(16)],
    ids=["empty", "text", "pcap-magic-only", "zeros"],
)
def test_garbage_input_exits_1(
    content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    result = run(capsys, "decode", str(path))
    assert (result.code, result.out) == (1, "")
    assert result.err.startswith(f"kinkctl decode: {path}: not a capture: ")
    assert "; not a KINK message: " in result.err


def test_unreadable_files_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "missing.pcap")
    result = run(capsys, "decode", missing)
    assert result.code == 1
    assert result.err == f"kinkctl decode: cannot read {missing}: No such file or directory\n"
    not_keytab = tmp_path / "not.keytab"
    not_keytab.write_text("[libdefaults]\n")
    result = run(capsys, "decode", "--keytab", str(not_keytab), CAPTURES["basic"])
    assert (result.code, result.out) == (1, "")
    assert result.err == f"kinkctl decode: {not_keytab} is not a keytab file\n"


def test_damaged_capture_prints_what_precedes_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = Path(CAPTURES["basic"]).read_bytes()
    frame_14 = data.index(datagrams("basic")[14])
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[: frame_14 + 100])  # inside frame 14's record
    result = run(capsys, "decode", "--keytab", HOST_B_KEYTAB, str(path))
    assert result.code == 1
    assert [int(h[1]) for h in headers(result.out)] == BASIC_FRAMES[:6]
    assert "capture damaged after the messages shown: offset " in result.err


def test_pcapng_with_undecodable_datagrams(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every datagram is listed; one that does not decode says where and why."""
    create, reply = datagrams("basic")[5], datagrams("basic")[6]
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(
        pcapng(
            [
                (INITIATOR, RESPONDER, create),
                (INITIATOR, RESPONDER, b"\x01\x10" + bytes(8)),
                (INITIATOR, RESPONDER, create[:100]),
                (RESPONDER, INITIATOR, reply),
            ]
        )
    )
    result = run(capsys, "decode", "--keytab", HOST_B_KEYTAB, str(path))
    assert result.code == 0
    lines = [line for line in result.out.splitlines() if line.startswith("#")]
    assert len(lines) == 4
    assert lines[1] == (
        f"#2  2026-11-27T06:26:41.000Z  {INITIATOR}:910 -> {RESPONDER}:910  "
        "undecodable: offset 0: 10 octets, less than the 16-octet KINK header"
    )
    assert lines[2].endswith(
        "CREATE xid=0 len=852 undecodable: offset 2: Length 852 exceeds the 100 octets received"
    )
    assert lines[3].endswith(
        "REPLY xid=0 len=220 answers=CREATE#1 cksum=12 (verified with the key of #1)"
    )
    assert len(keymat_of_text(result.out)) == 2
    as_json = json.loads(run(capsys, "decode", "--json", str(path)).out)["messages"]
    assert as_json[1]["error"] == {
        "offset": 0,
        "reason": "10 octets, less than the 16-octet KINK header",
    }
    assert (as_json[2]["type"], as_json[2]["error"]["offset"]) == ("CREATE", 2)


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "decode").code == 2
    assert run(capsys, "decode", "--aes-prf", "mit", CAPTURES["basic"]).code == 2
    assert run(capsys, "decode", "--bogus", CAPTURES["basic"]).code == 2
    assert run(capsys, "frobnicate").code == 2
    result = run(capsys)
    assert result.code == 2 and "a command is required" in result.err


def test_help_warns_about_keys(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(capsys, "decode", "--help")
    assert result.code == 0
    text = " ".join(result.out.split())
    assert "debugging tool for captures" in text
    assert "only because you gave it keytabs" in text
    assert "decode" in run(capsys, "--help").out


def test_as_a_process() -> None:
    """python -m kink.ctl, as the console script runs it (kinkctl = kink.ctl.cli:main)."""
    basic = CAPTURES["basic"]
    done = subprocess.run(
        [sys.executable, "-m", "kink.ctl", "decode", "--json", "--keytab", HOST_B_KEYTAB, basic],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, b"")
    messages = json.loads(done.stdout)["messages"]
    assert [m["frame"] for m in messages] == BASIC_FRAMES
    assert all(m["cksum"] == "verified" for m in messages)
    garbage = subprocess.run(
        [sys.executable, "-m", "kink.ctl", "decode", __file__],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert garbage.returncode == 1 and b"not a capture" in garbage.stderr
