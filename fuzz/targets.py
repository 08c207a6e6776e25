"""The fuzz targets: one function per parser, each taking one input and raising only on a bug.

A target lets the parser's one documented error through silently (kink.wire.DecodeError;
kink_privsep's ProtocolError and Refusal) and raises AssertionError on a broken invariant;
any other exception is a finding. The functions import nothing from atheris, so a finding
becomes a unit test by calling the target on it (tests/robustness/test_fuzz_regressions.py).
"""

import contextlib
import dataclasses
from collections.abc import Callable

from kink.wire import (
    DecodeError,
    EncodeError,
    Message,
    MessageType,
    check_message,
    cksum_input,
    decode,
    decode_inner,
    encode,
)
from kink_privsep import protocol, validate
from kink_privsep.errors import Refusal
from kink_privsep.model import Config

# The helper's configuration while fuzzing: the ranges of the seeds (tests/privsep), small limits.
PRIVSEP_CONFIG = Config(
    (0x6B70_0000, 0x6B70_00FF), (0x6B70_0000, 0x6B70_00FF), max_sas=8, max_policies=4
)
_REQUESTS = (None, MessageType.CREATE, MessageType.DELETE, MessageType.STATUS, MessageType.GETTGT)
_REFUSALS = frozenset({protocol.ERR_INVALID, protocol.ERR_FORBIDDEN})
_PROTOCOL_ERRORS = frozenset(
    {protocol.ERR_MALFORMED, protocol.ERR_VERSION, protocol.ERR_UNKNOWN_OP}
)


def wire(data: bytes) -> None:
    """A received datagram through every step of kink.wire.message's receive order.

    The KINK_ENCRYPT content is taken to be its own plaintext (the fuzzer cannot forge a
    Kerberos encryption), so decode_inner and the §6 rules on inner payloads are reached from
    the seeds, whose ciphertexts were swapped for the captured plaintexts. A message that
    decodes must also encode again to one that decodes to the same payloads."""
    try:
        cksum: bytes | None = cksum_input(data)[1]
    except DecodeError:
        cksum = None
    try:
        msg = decode(data)
    except DecodeError as exc:
        assert exc.kink_error is not None
        return
    assert cksum == msg.cksum, "cksum_input disagrees with decode"
    again = decode(_encode(msg))
    assert again.payloads == msg.payloads and again.ciphertext == msg.ciphertext
    if msg.ciphertext is not None:
        try:
            msg = dataclasses.replace(msg, encrypted=decode_inner(msg.ciphertext))
        except DecodeError:
            return
    for request in _REQUESTS:
        with contextlib.suppress(DecodeError):
            check_message(msg, request)


def _encode(msg: Message) -> bytes:
    try:
        return encode(msg)
    except EncodeError:
        raise AssertionError("a decoded message does not encode") from None


def privsep(data: bytes) -> None:
    """One request as the helper's server takes it: envelope, then schema and rules."""
    try:
        request = protocol.decode_request(data)
    except protocol.ProtocolError as exc:
        assert exc.code in _PROTOCOL_ERRORS, exc.code
        return
    try:
        validate.command(request.op, request.args, PRIVSEP_CONFIG)
    except Refusal as exc:
        assert exc.code in _REFUSALS, exc.code


TARGETS: dict[str, Callable[[bytes], None]] = {"wire": wire, "privsep": privsep}
