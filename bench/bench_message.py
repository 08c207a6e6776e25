"""Receive and send paths of a typical CREATE (issue 2's figure): decode + verify Cksum +
decrypt + §6 checks, and encode + encrypt + Cksum, with a warm session key."""

import dataclasses

from bench.common import emit, rate
from kink.crypto.rfc3961 import Key
from kink.crypto.seal import SessionSealer, open_message
from kink.wire import decode, encode
from tests.wire.captures import ROWS, raw

SESSION_KEY = "6f6e273c227eaace58145a81907c0bf8e0dcc0623079893dc4ee0d916c81e346"


def main() -> None:
    row = next(r for r in ROWS if r.id == "basic/5")  # the racoon2 CREATE, 852 octets
    datagram = raw(row)
    key = Key(18, bytes.fromhex(SESSION_KEY))
    sealer = SessionSealer(key)
    opened = open_message(decode(datagram), key)
    to_send = dataclasses.replace(opened, ciphertext=None)

    def receive() -> None:
        open_message(decode(datagram), key)

    def send() -> None:
        encode(to_send, sealer)

    emit("create_receive", rate(receive), "messages/s", octets=len(datagram), enctype=18)
    emit("create_send", rate(send), "messages/s", octets=len(datagram), enctype=18)


if __name__ == "__main__":
    main()
