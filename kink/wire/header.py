"""The 16-octet KINK message header (RFC 4430 §4, Figure 5)."""

import struct
from typing import NamedTuple

from kink.wire.constants import ACKREQ_FLAG

# Type(1) MjVer|RESRVED(1) Length(2) DOI(4) XID(4) NextPayload(1) A|RESERVED2(1) CksumLen(2)
HEADER = struct.Struct(">BBHIIBBH")


class Header(NamedTuple):
    """The raw header fields, as received (nothing validated or converted)."""

    type: int
    version: int  # the whole octet: MjVer in the high nibble, RESRVED in the low one
    length: int
    doi: int
    xid: int
    next_payload: int
    flags: int  # the whole octet: ACKREQ is the top bit, the rest is RESERVED2
    cksum_len: int

    @property
    def mjver(self) -> int:
        return self.version >> 4

    @property
    def ackreq(self) -> bool:
        return bool(self.flags & ACKREQ_FLAG)
