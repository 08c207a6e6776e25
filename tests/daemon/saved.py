"""Saved children for the state tests (test_state_file, test_persistence): a responder child's
record with given SPIs and the kernel SAs of two pairs."""

from ipaddress import ip_network

from kink.daemon.state import SaId
from kink.engine import ChildRecord
from kink.engine.events import SaLifetimes, SaTransform, Selector

PAIR: frozenset[SaId] = frozenset({("esp", 0x1001, "192.0.2.1"), ("esp", 0x2002, "192.0.2.2")})
OTHER: frozenset[SaId] = frozenset({("esp", 0x3003, "192.0.2.1"), ("esp", 0x4004, "192.0.2.2")})


def record(spi_in: int, spi_out: int) -> ChildRecord:
    return ChildRecord(
        peer="b",
        initiator=False,
        spis=((3, spi_in, spi_out),),
        mode="transport",
        reqid=0x10040,
        local=Selector(ip_network("192.0.2.1/32")),
        remote=Selector(ip_network("192.0.2.2/32")),
        send_ids=False,
        transforms=(SaTransform(3, "rfc4106(gcm(aes))", 128, 128, None, None),),
        life=SaLifetimes(0, 3600, 0, 0),
        pfs_group=None,
        peer_epoch=7,
        age=1.5,
        rekey_in=None,
    )
