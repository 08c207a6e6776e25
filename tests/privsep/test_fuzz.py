"""Hostile input never escapes as anything but the layer's documented error."""

from __future__ import annotations

import contextlib
from typing import Any

import msgpack
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from kink_privsep import protocol, validate, xfrm
from kink_privsep.errors import KernelError, Refusal
from kink_privsep.model import AddPolicy, AddSa
from kink_privsep.netlink import NLMSG_HDR
from tests.privsep.harness import TEST_CONFIG
from tests.privsep.test_validation import POLICY, SA, SPI_REQUEST

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=80)
    | st.sampled_from(["esp", "ah", "tunnel", "10.0.0.0/8", "192.0.2.1", "fd00::1", "aes-gcm"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=20,
)
BASES: list[tuple[str, dict[str, Any]]] = [
    ("add_sa", SA),
    ("alloc_spi", SPI_REQUEST),
    ("add_policy", POLICY),
]


def _check(op: str, args: object) -> None:
    try:
        validate.command(op, args, TEST_CONFIG)  # type: ignore[arg-type]
    except Refusal as e:
        assert e.code in (protocol.ERR_INVALID, protocol.ERR_FORBIDDEN)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_are_malformed_requests(data: bytes) -> None:
    with contextlib.suppress(protocol.ProtocolError):
        protocol.decode_request(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_to_requests_or_errors(data: bytes) -> None:
    _batch, requests = protocol.decode_requests(data)
    assert requests and all(
        isinstance(r, protocol.Request | protocol.ProtocolError) for r in requests
    )


@settings(max_examples=300, deadline=None)
@given(st.lists(VALUES, max_size=70), VALUES)
def test_random_batches_decode_item_by_item(items: list[object], version: object) -> None:
    data = msgpack.packb({"v": version, "batch": items})
    assume(len(data) <= protocol.MAX_BATCH_BYTES)
    batch, requests = protocol.decode_requests(data)
    assert batch
    if (
        type(version) is int
        and version == protocol.VERSION
        and 1 <= len(items) <= protocol.MAX_BATCH
    ):
        assert len(requests) == len(items)
    else:
        [refused] = requests
        assert isinstance(refused, protocol.ProtocolError) and refused.req_id is None


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(protocol.REQUESTS)), VALUES)
def test_random_args(op: str, args: object) -> None:
    _check(op, args)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(BASES), st.data())
def test_one_field_changed(base: tuple[str, dict[str, Any]], data: st.DataObject) -> None:
    op, args = base
    name = data.draw(st.sampled_from(sorted(args)))
    _check(op, {**args, name: data.draw(VALUES)})
    request = msgpack.packb({"v": 1, "id": 1, "op": op, "args": {**args, name: None}})
    assert protocol.decode_request(request).op == op


KINDS = [
    xfrm.XFRM_MSG_NEWSA,
    xfrm.XFRM_MSG_DELSA,
    xfrm.XFRM_MSG_NEWPOLICY,
    xfrm.XFRM_MSG_DELPOLICY,
    xfrm.XFRM_MSG_ACQUIRE,
    xfrm.XFRM_MSG_EXPIRE,
    xfrm.XFRM_MSG_POLEXPIRE,
]


def _valid_bodies() -> list[tuple[int, bytes]]:
    sa = validate.command("add_sa", SA | {"selector": POLICY["selector"]}, TEST_CONFIG)
    policy = validate.command("add_policy", POLICY, TEST_CONFIG)
    assert isinstance(sa, AddSa) and isinstance(policy, AddPolicy)
    return [
        (xfrm.XFRM_MSG_NEWSA, bytes(xfrm.encode_newsa(sa.sa, False))[NLMSG_HDR.size :]),
        (
            xfrm.XFRM_MSG_NEWPOLICY,
            bytes(xfrm.encode_newpolicy(policy.policy, False))[NLMSG_HDR.size :],
        ),
    ]


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(KINDS), st.binary(min_size=0, max_size=400))
def test_random_kernel_messages(kind: int, body: bytes) -> None:
    with contextlib.suppress(KernelError):
        xfrm.decode_event(kind, memoryview(body))


@settings(max_examples=1000, deadline=None)
@given(
    st.sampled_from(_valid_bodies()),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_damaged_kernel_messages(message: tuple[int, bytes], damage: list[tuple[int, int]]) -> None:
    kind, body = message
    damaged = bytearray(body)
    for offset, value in damage:
        damaged[offset % len(damaged)] = value
    with contextlib.suppress(KernelError):
        xfrm.decode_event(kind, memoryview(damaged))
