"""Valid configurations of every shape, built into the engine's types."""

from ipaddress import ip_network
from pathlib import Path

from kink.crypto.profiles import AesPrf
from kink.daemon.config import DEFAULT_REQID_BASE, DaemonSettings, load
from kink.daemon.config_peers import BLOCK, DEFAULT_REQIDS
from kink.daemon.config_proposals import DEFAULT_PROPOSALS
from kink.engine.config import (
    EngineConfig,
    Policy,
    ProposalSpec,
    StartAction,
    TransformSpec,
    U2u,
)
from kink.engine.events import Selector
from kink.wire.ipsec_doi import (
    AhTransform,
    AuthAlgorithm,
    EspTransform,
    GroupDescription,
    ProtocolId,
)
from tests.config.support import DAEMON, load_text, peer, write

GW = '[peers.gw]\naddress = "192.0.2.2"\nprincipal = "kink/gw.example.org@EXAMPLE.ORG"\n'


def host(address: str) -> Selector:
    return Selector(ip_network(address))


def test_the_smallest_file(tmp_path: Path) -> None:
    path = write(tmp_path, DAEMON)
    config = load(str(path))
    assert config.source == path
    assert config.daemon == DaemonSettings()
    assert config.engine == EngineConfig(address="192.0.2.1", principal="")


def test_daemon_keys(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        "[daemon]\n"
        'address = "2001:DB8::1"\n'
        'listen = ["2001:db8::1", "192.0.2.1"]\n'
        "port = 1910\n"
        'user = "nobody"\n'
        'control_group = "wheel"\n'
        'principal = "kink/host.example.org@EXAMPLE.ORG"\n'
        'ccache_dir = "/var/lib/kink/cc"\n'
        'log_level = "debug"\n'
        "delete_on_stop = true\n"
        "helper_reqid_base = 0x10000\n"
        "retransmit_initial = 2\n"
        "retransmit_cap = 8.5\n"
        "max_attempts = 3\n"
        "delete_grace = 0.5\n"
        "replay_window = 0\n"
        "nonce_length = 32\n"
        "responder_nonce = true\n"
        'aes_prf = "truncated"\n',
    )
    assert config.daemon.listen == ("2001:db8::1", "192.0.2.1")
    assert config.daemon.port == 1910
    assert config.daemon.user == "nobody"
    assert config.daemon.control_group == "wheel"
    assert config.daemon.ccache_dir == Path("/var/lib/kink/cc")
    assert config.daemon.log_level == "debug"
    assert config.daemon.delete_on_stop
    assert config.daemon.helper_reqid_base == 0x10000
    engine = config.engine
    assert engine.address == "2001:db8::1"  # normalised
    assert engine.principal == "kink/host.example.org@EXAMPLE.ORG"
    assert engine.port == 1910
    assert engine.retransmit_initial == 2.0
    assert isinstance(engine.retransmit_initial, float)
    assert engine.retransmit_cap == 8.5
    assert engine.max_attempts == 3
    assert engine.delete_grace == 0.5
    assert engine.replay_window == 0
    assert engine.nonce_length == 32
    assert engine.responder_nonce
    assert engine.aes_prf is AesPrf.TRUNCATED


def test_transport_host_to_host(tmp_path: Path) -> None:
    config = load_text(tmp_path, DAEMON + GW)
    gw = peer(config, "gw")
    assert gw.address == "192.0.2.2"
    assert gw.principal == "kink/gw.example.org@EXAMPLE.ORG"
    assert gw.mode == "transport"
    assert gw.proposals == DEFAULT_PROPOSALS
    (policy,) = gw.policies
    # RFC 4430 §5.3: host to host, no ID payloads.
    assert (policy.local, policy.remote, policy.send_ids) == (
        host("192.0.2.1"),
        host("192.0.2.2"),
        False,
    )
    assert DEFAULT_REQID_BASE <= policy.reqid < DEFAULT_REQID_BASE + DEFAULT_REQIDS


def test_transport_with_protocol_and_port(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        DAEMON + GW + 'protocol = "tcp"\nremote_port = 443\nlocal_subnets = ["192.0.2.1"]\n',
    )
    (policy,) = peer(config, "gw").policies
    assert policy.local == Selector(ip_network("192.0.2.1/32"), 6, 0)
    assert policy.remote == Selector(ip_network("192.0.2.2/32"), 6, 443)
    assert policy.send_ids


def test_protocol_by_number(tmp_path: Path) -> None:
    config = load_text(tmp_path, DAEMON + GW + "protocol = 47\n")
    (policy,) = peer(config, "gw").policies
    assert policy.local.protocol == policy.remote.protocol == 47


def test_tunnel_with_subnets(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        DAEMON
        + GW
        + 'mode = "tunnel"\n'
        + 'local_subnets = ["10.1.0.0/16", "10.3.0.0/16"]\n'
        + 'remote_subnets = ["10.2.0.0/16"]\n',
    )
    gw = peer(config, "gw")
    assert gw.mode == "tunnel"
    pairs = [(str(p.local.network), str(p.remote.network)) for p in gw.policies]
    assert pairs == [("10.1.0.0/16", "10.2.0.0/16"), ("10.3.0.0/16", "10.2.0.0/16")]
    assert all(p.send_ids for p in gw.policies)
    reqids = [p.reqid for p in gw.policies]
    assert reqids[1] == reqids[0] + 1
    assert (reqids[0] - DEFAULT_REQID_BASE) % BLOCK == 0


def test_tunnel_to_a_subnet_from_this_host(tmp_path: Path) -> None:
    config = load_text(
        tmp_path, DAEMON + GW + 'mode = "tunnel"\nremote_subnets = ["10.2.0.0/16"]\n'
    )
    (policy,) = peer(config, "gw").policies
    assert (policy.local, policy.remote) == (host("192.0.2.1"), host("10.2.0.0/16"))
    assert policy.send_ids


def test_ipv6_dual_stack_tunnel(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        '[daemon]\naddress = "2001:db8::1"\n'
        '[peers.v6]\naddress = "2001:db8::2"\nprincipal = "kink/v6@R"\nmode = "tunnel"\n'
        'local_subnets = ["2001:db8:1::/48", "10.1.0.0/16"]\n'
        'remote_subnets = ["10.2.0.0/16", "2001:db8:2::/48"]\n',
    )
    v6 = peer(config, "v6")
    pairs = [(str(p.local.network), str(p.remote.network)) for p in v6.policies]
    assert pairs == [("2001:db8:1::/48", "2001:db8:2::/48"), ("10.1.0.0/16", "10.2.0.0/16")]


def test_ipv6_transport(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        '[daemon]\naddress = "2001:db8::1"\n[peers.v6]\naddress = "2001:db8:0::2"\n'
        'principal = "kink/v6@R"\n',
    )
    v6 = peer(config, "v6")
    assert v6.address == "2001:db8::2"
    assert v6.policies[0].remote == host("2001:db8::2")


def test_proposals_bundles_and_pfs(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        DAEMON
        + GW
        + 'pfs_group = "modp2048"\npfs_required = true\n'
        + "[[peers.gw.proposals]]\n"
        + 'ah.integrity = "sha512"\n'
        + 'esp = { encryption = "aes-gcm-12", key_length = 192 }\n'
        + "[[peers.gw.proposals]]\n"
        + "[peers.gw.proposals.esp]\n"
        + 'encryption = "null"\nintegrity = "sha1"\n'
        + "[peers.gw.proposals.ah]\n"
        + 'integrity = "sha384"\n'
        + "[[peers.gw.proposals]]\n"
        + 'esp = { encryption = "aes-cbc", integrity = "sha384" }\n',
    )
    gw = peer(config, "gw")
    assert gw.pfs_group == GroupDescription.MODP_2048
    assert gw.pfs_required
    esp, ah = ProtocolId.ESP, ProtocolId.AH
    assert gw.proposals == (
        ProposalSpec(
            (
                TransformSpec(ah, AhTransform.SHA2_512, AuthAlgorithm.HMAC_SHA2_512),
                TransformSpec(esp, EspTransform.AES_GCM_12, None, 192),
            )
        ),
        ProposalSpec(  # in the order written: ESP, then AH
            (
                TransformSpec(esp, EspTransform.NULL, AuthAlgorithm.HMAC_SHA1),
                TransformSpec(ah, AhTransform.SHA2_384, AuthAlgorithm.HMAC_SHA2_384),
            )
        ),
        ProposalSpec(  # key_length defaults to 128
            (TransformSpec(esp, EspTransform.AES_CBC, AuthAlgorithm.HMAC_SHA2_384, 128),)
        ),
    )


def test_peer_keys(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        DAEMON
        + GW
        + "port = 9910\nlifetime_seconds = 3600\nlifetime_kilobytes = 1000000\n"
        + 'u2u = "require"\ngive_tgt = true\nstart_action = "none"\n',
    )
    gw = peer(config, "gw")
    assert (gw.port, gw.lifetime_seconds, gw.lifetime_kilobytes) == (9910, 3600, 1000000)
    assert (gw.u2u, gw.give_tgt, gw.start_action) == (U2u.REQUIRE, True, StartAction.NONE)


def test_defaults_are_inherited_and_overridden(tmp_path: Path) -> None:
    config = load_text(
        tmp_path,
        DAEMON
        + '[defaults]\nmode = "tunnel"\nu2u = "allow"\nlifetime_seconds = 7200\n'
        + '[[defaults.proposals]]\nesp = { encryption = "aes-gcm" }\n'
        + GW
        + '[peers.other]\naddress = "192.0.2.3"\nprincipal = "kink/o@R"\nu2u = "never"\n'
        + '[[peers.other.proposals]]\nah = { integrity = "sha1" }\n',
    )
    gw, other = peer(config, "gw"), peer(config, "other")
    gcm = (ProposalSpec((TransformSpec(ProtocolId.ESP, EspTransform.AES_GCM_16, None, 128),)),)
    assert (gw.mode, gw.u2u, gw.lifetime_seconds, gw.proposals) == (
        "tunnel",
        U2u.ALLOW,
        7200,
        gcm,
    )
    assert (other.mode, other.u2u, other.lifetime_seconds) == ("tunnel", U2u.NEVER, 7200)
    assert other.proposals == (
        ProposalSpec((TransformSpec(ProtocolId.AH, AhTransform.SHA, AuthAlgorithm.HMAC_SHA1),)),
    )


def test_several_peers_get_disjoint_stable_reqids(tmp_path: Path) -> None:
    names = [f"peer{i}" for i in range(40)]
    text = DAEMON + "".join(
        f'[peers.{name}]\naddress = "192.0.2.{10 + i}"\nprincipal = "kink/{name}@R"\n'
        'mode = "tunnel"\nremote_subnets = ["10.0.0.0/24", "10.0.1.0/24"]\n'.replace(
            "10.0.", f"10.{i}."
        )
        for i, name in enumerate(names)
    )
    config = load_text(tmp_path, text)
    reqids = [p.reqid for peer_ in config.engine.peers for p in peer_.policies]
    assert len(set(reqids)) == len(reqids) == 80
    assert all(DEFAULT_REQID_BASE <= r < DEFAULT_REQID_BASE + DEFAULT_REQIDS for r in reqids)
    # Another peer's removal leaves a peer's reqids as they were (reload keeps its policies).
    alone = load_text(
        tmp_path, DAEMON + text[text.index("[peers.peer7]") :].split("[peers.peer8]")[0]
    )
    assert peer(alone, "peer7").policies == peer(config, "peer7").policies


def test_policies_are_engine_policies(tmp_path: Path) -> None:
    config = load_text(
        tmp_path, DAEMON + GW + 'mode = "tunnel"\nremote_subnets = ["10.9.0.0/16"]\n'
    )
    (policy,) = peer(config, "gw").policies
    assert isinstance(policy, Policy)


def test_many_policies_take_a_run_of_blocks(tmp_path: Path) -> None:
    subnets = ", ".join(f'"10.{i}.0.0/16"' for i in range(15))
    big = GW + f'mode = "tunnel"\nlocal_subnets = [{subnets}]\n'
    big += f"remote_subnets = [{subnets.replace('10.', '172.')}]\n"  # 225 pairs: 4 blocks
    small = [
        f'[peers.p{i}]\naddress = "198.51.{i // 200}.{i % 200 + 1}"\nprincipal = "kink/p{i}@R"\n'
        for i in range(300)
    ]
    config = load_text(tmp_path, DAEMON + big + "".join(small))
    reqids = [p.reqid for p in peer(config, "gw").policies]
    assert len(reqids) == 225
    assert all((r - DEFAULT_REQID_BASE) % BLOCK == i % BLOCK for i, r in enumerate(reqids))
    everyone = [p.reqid for peer_ in config.engine.peers for p in peer_.policies]
    assert len(set(everyone)) == len(everyone) == 525


def test_more_peers_than_the_old_reqid_range_held(tmp_path: Path) -> None:
    text = DAEMON + "".join(
        f'[peers.p{i}]\naddress = "10.{i // 250}.{i % 250}.1"\nprincipal = "kink/p{i}@R"\n'
        for i in range(2000)
    )
    config = load_text(tmp_path, text)
    reqids = {p.reqid for peer_ in config.engine.peers for p in peer_.policies}
    assert len(reqids) == len(config.engine.peers) == 2000


def test_the_old_reqid_range_numbers_as_before(tmp_path: Path) -> None:
    # helper_reqids = 0x10000 is the range of kink before the key existed: the same reqids
    # (704 blocks of 64 from a hash of the name), so the kernel SAs of an upgraded host keep
    # matching its policies' templates.
    config = load_text(tmp_path, DAEMON + "helper_reqids = 0x10000\n" + GW)
    assert [p.reqid for p in peer(config, "gw").policies] == [0x4B49_5BC0]
    assert config.engine.reqid_base == DEFAULT_REQID_BASE + 0xB000
