"""The DER reader for AP-REQ envelopes and Authenticators (RFC 4120 §5.5.1)."""

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kink.krb5 import _der
from kink.krb5.errors import Krb5Error
from tests.krb5.pcap import kink_ap_req

# racoon2 basic/a.pcap (shared/interop), copied to tests/wire/data.
CAPTURE = Path(__file__).resolve().parents[1] / "wire" / "data" / "basic-a.pcap"


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x82]) + n.to_bytes(2, "big")
    return bytes([tag]) + length + content


def ctx(n: int, content: bytes) -> bytes:
    return tlv(0xA0 + n, content)


def integer(v: int) -> bytes:
    return tlv(0x02, v.to_bytes((v.bit_length() + 8) // 8, "big", signed=True))


def authenticator(*, subkey: bool, seq: int | None, ctime: bytes = b"20261127062645Z") -> bytes:
    name = tlv(0x30, ctx(0, integer(1)) + ctx(1, tlv(0x30, tlv(0x1B, b"alice"))))
    fields = ctx(0, integer(5)) + ctx(1, tlv(0x1B, b"EXAMPLE.TEST")) + ctx(2, name)
    fields += ctx(4, integer(142779)) + ctx(5, tlv(0x18, ctime))
    if subkey:
        fields += ctx(6, tlv(0x30, ctx(0, integer(18)) + ctx(1, tlv(0x04, bytes(32)))))
    if seq is not None:
        fields += ctx(7, integer(seq))
    return tlv(0x62, tlv(0x30, fields))


def test_ap_req_from_capture() -> None:
    ap_req = kink_ap_req(CAPTURE, 5)
    parts = _der.parse_ap_req(ap_req)
    assert parts.ap_options == 0x20000000  # mutual-required
    assert _der.ap_options(ap_req) == parts.ap_options
    assert parts.ticket[0] == 0x61 and parts.ticket in ap_req
    assert parts.authenticator_enctype == 18
    assert parts.authenticator_kvno is None
    assert ap_req.endswith(parts.authenticator_cipher)


def test_authenticator_fields() -> None:
    plain = authenticator(subkey=True, seq=0xFFFFFFFF)
    a = _der.parse_authenticator(plain + bytes(7))  # decryption may leave padding
    assert (a.ctime, a.cusec) == (1795760805, 142779)
    assert (a.subkey_enctype, a.seq_number) == (18, 0xFFFFFFFF)
    b = _der.parse_authenticator(authenticator(subkey=False, seq=None))
    assert (b.subkey_enctype, b.seq_number) == (None, None)


@pytest.mark.parametrize(
    "ctime", [b"20261327062645Z", b"2026112706264Z", b"20261127062645", b"2026112706264xZ"]
)
def test_bad_kerberos_time(ctime: bytes) -> None:
    with pytest.raises(Krb5Error):
        _der.parse_authenticator(authenticator(subkey=False, seq=None, ctime=ctime))


def test_every_truncation_is_a_krb5_error() -> None:
    ap_req = kink_ap_req(CAPTURE, 5)
    for cut in range(len(ap_req)):
        with pytest.raises(Krb5Error):
            _der.parse_ap_req(ap_req[:cut])
        with pytest.raises(Krb5Error):
            _der.ap_options(ap_req[:cut])
    plain = authenticator(subkey=True, seq=7)
    for cut in range(len(plain)):
        with pytest.raises(Krb5Error):
            _der.parse_authenticator(plain[:cut])


def test_wrong_message() -> None:
    with pytest.raises(Krb5Error):
        _der.parse_ap_req(authenticator(subkey=False, seq=None))
    with pytest.raises(Krb5Error):
        _der.parse_authenticator(kink_ap_req(CAPTURE, 5))


@given(st.binary(max_size=300))
def test_garbage_never_escapes_as_another_error(data: bytes) -> None:
    for parse in (
        _der.parse_ap_req,
        _der.ap_options,
        _der.authenticator_cipher,
        _der.parse_authenticator,
    ):
        with contextlib.suppress(Krb5Error):
            parse(data)


@given(st.integers(0, 705), st.integers(0, 7))
def test_bit_flips_never_escape_as_another_error(index: int, bit: int) -> None:
    damaged = bytearray(kink_ap_req(CAPTURE, 5))
    damaged[index % len(damaged)] ^= 1 << bit
    with contextlib.suppress(Krb5Error):
        _der.parse_ap_req(bytes(damaged))
    with contextlib.suppress(Krb5Error):
        _der.ap_options(bytes(damaged))
    with contextlib.suppress(Krb5Error):
        _der.authenticator_cipher(bytes(damaged))


def test_ap_options_reads_other_encodings_field_by_field() -> None:
    # The usual DER prefix is read at once; anything else goes through the field-by-field
    # reading and must give the same options. Here pvno gets a long-form length (BER).
    ap_req = kink_ap_req(CAPTURE, 5)
    body = ap_req[ap_req.index(bytes.fromhex("a003020105")) :]  # the SEQUENCE contents
    longer = bytes.fromhex("a08103020105") + body[5:]
    assert _der.ap_options(tlv(0x6E, tlv(0x30, longer))) == _der.ap_options(ap_req)
    # Five octets of flags: not the usual form either; the first 32 bits count.
    flags = bytes.fromhex("a003020105a10302010ea20803060012345678ff")
    assert _der.ap_options(tlv(0x6E, tlv(0x30, flags))) == 0x12345678


def test_ap_options_reads_the_usual_form_at_once_with_its_lengths_checked() -> None:
    ap_req = kink_ap_req(CAPTURE, 5)
    assert ap_req[1] == 0x82 and ap_req[5] == 0x82  # two-octet lengths: the form read at once
    assert _der.ap_options(ap_req) == _der.parse_ap_req(ap_req).ap_options
    # A SEQUENCE reaching past its [APPLICATION 14] is refused there as field by field.
    bad = bytearray(ap_req)
    bad[6:8] = (int.from_bytes(ap_req[2:4], "big") - 3).to_bytes(2, "big")
    with pytest.raises(Krb5Error):
        _der.ap_options(bytes(bad))
    # Octets after the AP-REQ are ignored by both readings.
    assert _der.ap_options(ap_req + b"\0\0") == _der.ap_options(ap_req)


def test_authenticator_cipher_from_capture() -> None:
    ap_req = kink_ap_req(CAPTURE, 5)
    cipher = _der.parse_ap_req(ap_req).authenticator_cipher
    assert _der.authenticator_cipher(ap_req) == cipher
    # the usual form, read at once with the options
    assert _der.usual_head(ap_req) == (_der.ap_options(ap_req), cipher)
    assert _der.authenticator_cipher(ap_req + b"\0") == cipher  # octets after it: ignored
    # With a kvno [1] in the EncryptedData it is read field by field, to the same octets.
    enc_start = ap_req.rindex(bytes.fromhex("a0030201"))
    with_kvno = ap_req[enc_start : enc_start + 5] + ctx(1, integer(3)) + ap_req[enc_start + 5 :]
    ticket_end = 31 + int.from_bytes(ap_req[29:31], "big")
    seq = tlv(0x30, with_kvno)
    rebuilt = tlv(0x6E, tlv(0x30, ap_req[8:ticket_end] + ctx(4, seq)))
    assert _der.usual_head(rebuilt) is None
    assert _der.authenticator_cipher(rebuilt) == cipher
    assert _der.parse_ap_req(rebuilt).authenticator_kvno == 3


def test_usual_head_is_refused_for_every_prefix() -> None:
    """The usual reading (kink_usual_head, in C) reads only octets it checked lie within the
    AP-REQ: every prefix of one is not in the usual encoding (its lengths reach past it)."""
    ap_req = kink_ap_req(CAPTURE, 5)
    assert _der.usual_head(ap_req) is not None
    assert all(_der.usual_head(ap_req[:n]) is None for n in range(len(ap_req)))


@given(st.integers(0, 705), st.integers(0, 7), st.binary(max_size=3))
def test_usual_form_agrees_with_field_by_field(index: int, bit: int, inserted: bytes) -> None:
    """Whatever the fast reading accepts, the field-by-field ones read to the same octets and
    options (the replay cache must never see two tags for one authenticator, and the key
    tried must not depend on which reading ran)."""
    ap_req = kink_ap_req(CAPTURE, 5)
    for damaged in (
        ap_req[: index % len(ap_req)]
        + bytes([ap_req[index % len(ap_req)] ^ 1 << bit])
        + ap_req[index % len(ap_req) + 1 :],
        ap_req[: index % len(ap_req)] + inserted + ap_req[index % len(ap_req) :],
    ):
        usual = _der.usual_head(damaged)
        if usual is not None:
            options, cipher = usual
            assert _der._authenticator_cipher_by_fields(damaged) == cipher
            # The options too: as ap_options reads them, and field by field.
            assert _der.ap_options(damaged) == options
            start, stop = _der._ap_req_body(damaged, "AP-REQ")
            assert _der._ap_options(damaged, start, stop, "AP-REQ")[0] == options
