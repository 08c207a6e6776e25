"""kink.wire on the CREATE racoon2's kinkd sent (frame 5 of the basic interop capture; the copy
in tests/wire/data): messages per second on one core, crypto left out (a fake sealer)."""

import dataclasses
import json
from pathlib import Path

from bench.common import emit, rate
from kink.wire import check_message, decode, decode_inner, encode
from kink.wire.pcap import read_capture

_DATA = Path(__file__).resolve().parents[1] / "tests" / "wire" / "data"


class _FakeSealer:
    """Returns the captured ciphertext and Cksum, so the output is the captured datagram."""

    def __init__(self, ciphertext: bytes, cksum: bytes) -> None:
        self._ciphertext = ciphertext
        self._cksum = cksum

    def checksum_length(self) -> int:
        return len(self._cksum)

    def checksum(self, data: bytes) -> bytes:
        return self._cksum

    def encrypt(self, plaintext: bytes) -> bytes:
        return self._ciphertext


def main() -> None:
    capture = (_DATA / "basic-a.pcap").read_bytes()
    datagram = next(d.payload for d in read_capture(capture) if d.frame == 5)
    plaintext = bytes.fromhex(json.loads((_DATA / "plaintexts.json").read_text())["basic/5"])
    received = decode(datagram)
    assert received.ciphertext is not None
    sealer = _FakeSealer(received.ciphertext, received.cksum)
    # What the engine hands to encode(): the payloads in clear, KINK_ENCRYPT still to be sealed.
    to_send = dataclasses.replace(
        received, encrypted=decode_inner(plaintext), ciphertext=None, cksum=b""
    )
    assert encode(to_send, sealer) == datagram

    def receive_rest() -> None:
        msg = dataclasses.replace(received, encrypted=decode_inner(plaintext))
        check_message(msg)

    extra = {"message": "CREATE", "octets": len(datagram)}
    emit("wire_decode_create", rate(lambda: decode(datagram)), "msg/s", **extra)
    emit("wire_encode_create", rate(lambda: encode(to_send, sealer)), "msg/s", **extra)
    emit("wire_decode_inner_and_check_create", rate(receive_rest), "msg/s", **extra)


if __name__ == "__main__":
    main()
