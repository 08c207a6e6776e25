"""What `sas` (control protocol and `kinkctl sas`) reports of a negotiated tunnel: the
selectors of the configured policy, AES-GCM with its key length, the PFS group, the lifetimes
the SAs were installed with and the reqid, on both daemons."""

import re
from dataclasses import replace
from ipaddress import ip_network

import pytest
import trio

from kink.ctl.cli import main
from kink.daemon.config import DEFAULT_REQID_BASE
from kink.engine import Policy, ProposalSpec, StartAction, TransformSpec
from kink.engine.events import Selector
from kink.wire.ipsec_doi import EspTransform, GroupDescription, ProtocolId
from tests.daemon.conftest import HostsFactory
from tests.daemon.harness import Node, wait_for_a_pair, with_peers

pytestmark = pytest.mark.trio

GCM_256 = ProposalSpec((TransformSpec(ProtocolId.ESP, EspTransform.AES_GCM_16, None, 256),))
REQID = DEFAULT_REQID_BASE + 5
LIFETIME = 3600
A_NET, B_NET = ip_network("10.1.0.0/24"), ip_network("10.2.0.0/24")
UDP = 17


def _tunnel(node: Node, local: Selector, remote: Selector) -> None:
    """node's one peer: a UDP tunnel between the two subnets, AES-GCM-256 with MODP 2048."""
    (peer,) = node.config.engine.peers
    peer = replace(
        peer,
        mode="tunnel",
        policies=(Policy(local, remote, REQID),),
        proposals=(GCM_256,),
        pfs_group=GroupDescription.MODP_2048,
        pfs_required=True,
        lifetime_seconds=LIFETIME,
    )
    node.config = with_peers(node.config, peer)


async def test_sas_reports_selectors_algorithms_pfs_and_lifetimes(
    make_hosts: HostsFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = make_hosts(a={"b": StartAction.START}, b={"a": StartAction.NONE})
    a, b = hosts["a"], hosts["b"]
    _tunnel(a, Selector(A_NET, UDP, 53), Selector(B_NET, UDP, 0))
    _tunnel(b, Selector(B_NET, UDP, 0), Selector(A_NET, UDP, 53))
    async with trio.open_nursery() as nursery:
        await b.start(nursery)
        await a.start(nursery)
        await wait_for_a_pair(a, b)
        (child_a,) = (await a.request("sas"))["sas"]
        (child_b,) = (await b.request("sas"))["sas"]
        assert child_a["mode"] == child_b["mode"] == "tunnel"
        assert child_a["reqid"] == child_b["reqid"] == REQID
        assert child_a["local"] == {"subnet": "10.1.0.0/24", "protocol": UDP, "port": 53}
        assert child_a["remote"] == {"subnet": "10.2.0.0/24", "protocol": UDP, "port": 0}
        assert (child_b["local"], child_b["remote"]) == (child_a["remote"], child_a["local"])
        assert child_a["pfs_group"] == child_b["pfs_group"] == "modp2048"
        for child in (child_a, child_b):
            life = child["life"]
            # The engine rekeys on time itself (no soft time limit, RFC 4430 §3.6).
            assert life == {
                "soft_seconds": None,
                "hard_seconds": LIFETIME,
                "soft_bytes": None,
                "hard_bytes": None,
            }
            assert 0 < child["expires_in"] <= LIFETIME
            (sa,) = child["sas"]
            assert (sa["protocol"], sa["enc"], sa["enc_key_bits"], sa["icv_bits"]) == (
                "esp",
                "aes-gcm",
                256,
                128,
            )
            assert (sa["auth"], sa["auth_trunc_bits"]) == (None, None)
        assert child_a["rekey_in"] < child_a["expires_in"]  # the initiator rekeys before
        assert child_b["rekey_in"] is None

        argv = ["--socket", str(a.config.daemon.control_socket), "sas"]
        assert await trio.to_thread.run_sync(main, argv) == 0
        out = capsys.readouterr().out
        header, row = out.splitlines()
        assert header.split()[8:11] == ["SELECTORS", "ALGORITHMS", "PFS"]
        sa = child_a["sas"][0]
        assert re.fullmatch(
            rf"b +\d+ +installed +initiator +tunnel +esp +{sa['spi_in']:#010x} +"
            rf"{sa['spi_out']:#010x} +10\.1\.0\.0/24\[53\] <-> 10\.2\.0\.0/24 udp +aes-gcm-256 +"
            r"modp2048 +\S+ +\S+ +(59m\d\ds|1h00m) +.*",
            row,
        ), row
        await a.stop()
        await b.stop()
