"""The racoon2 interop captures, as the wire tests use them.

data/basic-a.pcap and data/krberr-a.pcap are copies of a.pcap of the basic/ and krberr/
scenarios in /work/shared/interop/racoon2-captures/ (whose README.md gives the tables below);
data/plaintexts.json holds the decrypted KINK_ENCRYPT contents listed in their decoded-a.json,
keyed "scenario/frame".
"""

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from kink.wire import MessageType, PayloadType
from kink.wire.pcap import read_capture

DATA = Path(__file__).with_name("data")

_C, _R, _S, _D = MessageType.CREATE, MessageType.REPLY, MessageType.STATUS, MessageType.DELETE
_AP_REQ, _AP_REP, _KRB_ERROR = PayloadType.AP_REQ, PayloadType.AP_REP, PayloadType.KRB_ERROR


@dataclass(frozen=True)
class Row:
    """One line of a README table: what the message must decode to."""

    scenario: str
    frame: int
    type: MessageType
    xid: int
    length: int
    outer: tuple[int, ...]  # outer payload types, KINK_ENCRYPT excluded
    epoch: int | None
    encrypt_length: int | None  # KINK_ENCRYPT Payload Length, None when absent
    cksum_len: int

    @property
    def id(self) -> str:
        return f"{self.scenario}/{self.frame}"


_A_EPOCH = 1795760774
_B_EPOCH, _B_EPOCH_RESTARTED = 1795760773, 1795760817
_KRBERR_EPOCH = 1795760688

ROWS: tuple[Row, ...] = (
    Row("basic", 5, _C, 0, 852, (_AP_REQ,), _A_EPOCH, 116, 12),
    Row("basic", 6, _R, 0, 220, (_AP_REP,), _B_EPOCH, 96, 12),
    Row("basic", 10, _S, 1, 736, (_AP_REQ,), _A_EPOCH, None, 12),
    Row("basic", 11, _R, 1, 124, (_AP_REP,), _B_EPOCH, None, 12),
    Row("basic", 12, _S, 2, 736, (_AP_REQ,), _A_EPOCH, None, 12),
    Row("basic", 13, _R, 2, 124, (_AP_REP,), _B_EPOCH_RESTARTED, None, 12),
    Row("basic", 14, _C, 3, 852, (_AP_REQ,), _A_EPOCH, 116, 12),
    Row("basic", 15, _R, 3, 220, (_AP_REP,), _B_EPOCH_RESTARTED, 96, 12),
    Row("basic", 17, _D, 4, 796, (_AP_REQ,), _A_EPOCH, 60, 12),
    Row("basic", 18, _R, 4, 184, (_AP_REP,), _B_EPOCH_RESTARTED, 60, 12),
    *(
        row
        for frame in (5, 7, 9, 11, 13)
        for row in (
            Row("krberr", frame, _C, 0, 852, (_AP_REQ,), _KRBERR_EPOCH, 116, 12),
            Row("krberr", frame + 1, _R, 0, 152, (_KRB_ERROR,), None, None, 0),
        )
    ),
)

# The command each REPLY answers (for check_message's `request`).
REQUEST_OF_REPLY = {
    "basic/6": _C,
    "basic/11": _S,
    "basic/13": _S,
    "basic/15": _C,
    "basic/18": _D,
    **{f"krberr/{frame}": _C for frame in (6, 8, 10, 12, 14)},
}


@cache
def datagrams(scenario: str) -> dict[int, bytes]:
    """Frame number -> UDP payload of every KINK datagram in the scenario's a.pcap."""
    data = (DATA / f"{scenario}-a.pcap").read_bytes()
    return {d.frame: d.payload for d in read_capture(data)}


def raw(row: Row) -> bytes:
    return datagrams(row.scenario)[row.frame]


@cache
def plaintexts() -> dict[str, bytes]:
    """ "scenario/frame" -> decrypted KINK_ENCRYPT content."""
    text = (DATA / "plaintexts.json").read_text()
    return {key: bytes.fromhex(value) for key, value in json.loads(text).items()}


def all_raw() -> list[bytes]:
    return [raw(row) for row in ROWS]
