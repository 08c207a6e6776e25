"""Traffic selectors <-> IDci/IDcr payloads (RFC 4430 §5.3, RFC 2407 §4.6.2): one address or
an address and mask; ranges are refused (INVALID-ID-INFORMATION)."""

from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from kink.engine.events import Selector
from kink.wire import IdPayload
from kink.wire.ipsec_doi import IdType

# Every CREATE sends and reads the same few selectors, and going through ipaddress costs
# ~13 k instructions a payload one way and ~55 k the other (issue 4): the (immutable) answers
# are kept. Bounded like the other per-configuration caches: past the limit a table starts
# again. Refusals (ValueError) are not kept.
_CACHE_LIMIT = 4096
_id_payloads: dict[Selector, IdPayload] = {}
_selectors: dict[tuple[int, int, int, bytes], Selector] = {}


def id_payload(selector: Selector) -> IdPayload:
    payload = _id_payloads.get(selector)
    if payload is None:
        if len(_id_payloads) >= _CACHE_LIMIT:
            _id_payloads.clear()
        payload = _id_payloads[selector] = _id_payload(selector)
    return payload


def _id_payload(selector: Selector) -> IdPayload:
    net = selector.network
    if net.prefixlen == net.max_prefixlen:
        kind = IdType.IPV4_ADDR if net.version == 4 else IdType.IPV6_ADDR
        data = net.network_address.packed
    else:
        kind = IdType.IPV4_ADDR_SUBNET if net.version == 4 else IdType.IPV6_ADDR_SUBNET
        data = net.network_address.packed + net.netmask.packed
    return IdPayload(kind, selector.protocol, selector.port, data)


def selector_of(payload: IdPayload) -> Selector:
    """ValueError for a range, a non-contiguous mask or host bits set."""
    key = (payload.id_type, payload.protocol, payload.port, payload.data)
    selector = _selectors.get(key)
    if selector is None:
        if len(_selectors) >= _CACHE_LIMIT:
            _selectors.clear()
        selector = _selectors[key] = _selector_of(payload)
    return selector


def _selector_of(payload: IdPayload) -> Selector:
    data = payload.data
    if payload.id_type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
        network = ip_network(ip_address(data))
    elif payload.id_type in (IdType.IPV4_ADDR_SUBNET, IdType.IPV6_ADDR_SUBNET):
        half = len(data) // 2
        address: IPv4Address | IPv6Address = ip_address(data[:half])
        network = ip_network((address, _prefix_length(data[half:])))
    else:
        raise ValueError(f"ID type {payload.id_type} is not a single address or subnet")
    return Selector(network, payload.protocol, payload.port)


def _prefix_length(mask: bytes) -> int:
    """The prefix length of a contiguous netmask (ip_network takes "a/255.255.0.0" for IPv4
    only, so both families go through a length). ValueError if the mask has holes."""
    bits = int.from_bytes(mask, "big")
    width = 8 * len(mask)
    length = width - (~bits & ((1 << width) - 1)).bit_length()
    if bits != ((1 << width) - 1) ^ ((1 << (width - length)) - 1):
        raise ValueError(f"non-contiguous netmask {mask.hex()}")
    return length


def within(inner: Selector, outer: Selector) -> bool:
    """`inner` selects a subset of the traffic `outer` does (protocol and port 0 = any)."""
    net, wide = inner.network, outer.network
    return (
        net.version == wide.version
        and net.subnet_of(wide)  # type: ignore[arg-type]
        and outer.protocol in (0, inner.protocol)
        and outer.port in (0, inner.port)
    )
