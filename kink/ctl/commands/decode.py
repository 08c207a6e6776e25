"""`kinkctl decode`: print the KINK messages of a capture, opened with keytabs if given."""

import argparse
import sys
from pathlib import Path

from kink.crypto.profiles import AesPrf
from kink.ctl.command import EXIT_FAILURE, EXIT_OK, Command
from kink.ctl.decode import Dissector, InputError, read_input
from kink.ctl.render import to_json, to_text

# MIT FILE keytabs start with the format version 0x05 0x01 or 0x05 0x02.
_KEYTAB_VERSIONS = (b"\x05\x01", b"\x05\x02")

_DESCRIPTION = """\
Print every KINK message (UDP port 910) of a pcap or pcapng capture, or of a file holding one
raw KINK message: header, payloads and the ISAKMP Quick Mode payloads inside.

With --keytab, the ticket of each KINK_AP_REQ is decrypted with the first keytab that has its
key (no clock checks: captures are old), each Cksum is verified and each KINK_ENCRYPT decrypted
with the ticket's session key, which also opens the REPLY and ACK of the same transaction
(same XID, same two addresses). For each CREATE/REPLY pair the tool prints the KEYMAT of every
SA: SPI, protocol, transform, and the encryption and authentication keys as the kernel gets
them.

This is a debugging tool for captures. It prints session keys and IPsec keys, and it does so
only because you gave it keytabs: the daemon and the other kinkctl commands never show keys.
Treat its output like the keytabs themselves.

Exit status: 0 done, 1 input unreadable or not a capture (or damaged past some point: the
messages before it are printed), 2 bad usage."""


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keytab",
        action="append",
        default=[],
        metavar="FILE",
        help="keytab of the responder(s) whose tickets to decrypt; repeat for several hosts",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "--aes-prf",
        choices=[p.value for p in AesPrf],
        default=AesPrf.LITERAL.value,
        help="PRF for KEYMAT with aes*-cts-hmac-sha1-96 session keys: literal (RFC 3962 §6 "
        "read literally, 20 octets, what racoon2 installs) or truncated (MIT/Heimdal "
        "krb5_c_prf, 16 octets); default: %(default)s",
    )
    parser.add_argument("input", metavar="INPUT", help="pcap/pcapng file, or one raw message")


def _fail(message: str) -> int:
    print(f"kinkctl decode: {message}", file=sys.stderr)
    return EXIT_FAILURE


def _keytab_problem(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            version = f.read(2)
    except OSError as exc:
        return f"cannot read keytab {path}: {exc.strerror or exc}"
    if version not in _KEYTAB_VERSIONS:
        return f"{path} is not a keytab file"
    return None


def _run(args: argparse.Namespace) -> int:
    try:
        data = Path(args.input).read_bytes()
    except OSError as exc:
        return _fail(f"cannot read {args.input}: {exc.strerror or exc}")
    for keytab in args.keytab:
        problem = _keytab_problem(keytab)
        if problem is not None:
            return _fail(problem)
    try:
        source = read_input(data)
    except InputError as exc:
        return _fail(f"{args.input}: {exc}")
    dissector = Dissector(args.keytab, aes_prf=AesPrf(args.aes_prf))
    try:
        messages = dissector.dissect_all(source.datagrams)
        if args.json:
            print(to_json(source, messages))
        else:
            for line in to_text(messages):
                print(line)
    finally:
        dissector.wipe()
    if source.fault is not None:
        return _fail(f"{args.input}: capture damaged after the messages shown: {source.fault}")
    if not source.datagrams:
        print(f"kinkctl decode: no KINK messages in {args.input}", file=sys.stderr)
    return EXIT_OK


COMMAND = Command(
    name="decode",
    summary="print the KINK messages of a capture (with keytabs: decrypted, with keys)",
    description=_DESCRIPTION,
    configure=_configure,
    run=_run,
)
