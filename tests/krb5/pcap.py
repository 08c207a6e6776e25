"""The Kerberos messages inside the racoon2 captures, read with kink's own capture reader and
KINK decoder (kink.wire.pcap, kink.wire.decode)."""

from pathlib import Path

from kink.wire import ApReq, KrbError, Message, decode
from kink.wire.pcap import read_capture


def kink_message(path: Path, frame_number: int) -> Message:
    """The KINK message in a frame of the capture (numbered from 1, as Wireshark does)."""
    for datagram in read_capture(path.read_bytes()):
        if datagram.frame == frame_number:
            return decode(datagram.payload)
    raise LookupError(f"no KINK message in frame {frame_number} of {path}")


def kink_ap_req(path: Path, frame_number: int) -> bytes:
    """The AP-REQ of a message starting with KINK_AP_REQ (RFC 4430 §4.2.1)."""
    first = kink_message(path, frame_number).payloads[0]
    assert isinstance(first, ApReq)
    return first.ap_req


def kink_krb_error(path: Path, frame_number: int) -> bytes:
    """The KRB-ERROR of a message starting with KINK_KRB_ERROR (RFC 4430 §4.2.3)."""
    first = kink_message(path, frame_number).payloads[0]
    assert isinstance(first, KrbError)
    return first.krb_error
