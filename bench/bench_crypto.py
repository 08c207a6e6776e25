"""kink.crypto: KINK_ENCRYPT + Cksum per message, PRF, KEYMAT per SA, DH per exchange."""

import os

from bench.common import emit, rate
from kink.crypto.algorithms import TransformParams, derive_sa_keys
from kink.crypto.dh import DhExchange
from kink.crypto.rfc3961 import (
    KEY_USAGE_KINK_CKSUM,
    KEY_USAGE_KINK_ENCRYPT,
    Key,
    checksum,
    decrypt,
    encrypt,
    prf,
    verify_checksum,
)
from kink.wire.ipsec_doi import AuthAlgorithm, EspTransform, ProtocolId

KEY_SIZES = {18: 32, 20: 32}
INNER = os.urandom(200)  # a KINK_ISAKMP payload with SA + NONCE, encrypted (RFC 4430 §4.2.7)
MESSAGE = os.urandom(850)  # a CREATE with AP-REQ, the Cksum input (RFC 4430 §4)
AES128_SHA1 = TransformParams(EspTransform.AES_CBC, AuthAlgorithm.HMAC_SHA1, 128)


def bench_messages(enctype: int) -> None:
    key = Key(enctype, os.urandom(KEY_SIZES[enctype]))

    def seal() -> None:
        encrypt(key, KEY_USAGE_KINK_ENCRYPT, INNER)
        checksum(key, KEY_USAGE_KINK_CKSUM, MESSAGE)

    sealed = encrypt(key, KEY_USAGE_KINK_ENCRYPT, INNER)
    cksum = checksum(key, KEY_USAGE_KINK_CKSUM, MESSAGE)

    def open_() -> None:
        decrypt(key, KEY_USAGE_KINK_ENCRYPT, sealed)
        verify_checksum(key, KEY_USAGE_KINK_CKSUM, MESSAGE, cksum)

    def cold() -> None:
        # A new session key: derives Ke, Ki and Kc first.
        fresh = Key(enctype, key_bytes)
        encrypt(fresh, KEY_USAGE_KINK_ENCRYPT, INNER)
        checksum(fresh, KEY_USAGE_KINK_CKSUM, MESSAGE)

    key_bytes = os.urandom(KEY_SIZES[enctype])
    extra = {"enctype": enctype, "plaintext": len(INNER), "cksum_input": len(MESSAGE)}
    emit("crypto.encrypt_checksum", rate(seal), "msg/s", **extra)
    emit("crypto.decrypt_verify", rate(open_), "msg/s", **extra)
    emit("crypto.encrypt_checksum_new_key", rate(cold), "msg/s", **extra)


def bench_prf_keymat(enctype: int) -> None:
    key = Key(enctype, os.urandom(KEY_SIZES[enctype]))
    src = bytes([ProtocolId.ESP]) + os.urandom(4 + 16)
    emit("crypto.prf", rate(lambda: prf(key, src)), "calls/s", enctype=enctype)
    spi, ni = os.urandom(4), os.urandom(16)
    emit(
        "crypto.keymat",
        rate(lambda: derive_sa_keys(key, ProtocolId.ESP, spi, ni, None, None, AES128_SHA1)),
        "SA/s",
        enctype=enctype,
        transform="aes128-cbc+hmac-sha1",
    )


def bench_dh(group: int) -> None:
    peer = DhExchange(group).public_bytes()

    def exchange() -> None:
        DhExchange(group).shared_secret(peer)

    emit("crypto.dh_exchange", rate(exchange), "exchanges/s", group=group)


def main() -> None:
    for enctype in (18, 20):
        bench_messages(enctype)
        bench_prf_keymat(enctype)
    for group in (2, 14, 16):
        bench_dh(group)


if __name__ == "__main__":
    main()
