"""Every class of configuration error, with its exact message: FILE:LINE: KEY: REASON."""

from pathlib import Path

import pytest

from kink.daemon.config import ConfigError, load
from tests.config.support import DAEMON, load_text, problems, write

GW = '[peers.gw]\naddress = "192.0.2.2"\nprincipal = "kink/gw@R"\n'  # lines 3-5 after DAEMON


def test_error_attributes_are_the_first_problem(tmp_path: Path) -> None:
    path = write(tmp_path, '[daemon]\naddress = "192.0.2.1"\nport = 0\nuser = ""\n')
    with pytest.raises(ConfigError) as caught:
        load(path)
    error = caught.value
    assert (error.path, error.line, error.key) == (path, 3, "daemon.port")
    assert error.reason == "must be between 1 and 65535, not 0"
    assert [str(p) for p in error.problems] == [
        f"{path}:3: daemon.port: must be between 1 and 65535, not 0",
        f"{path}:4: daemon.user: must not be empty",
    ]
    assert str(error) == "\n".join(str(p) for p in error.problems)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "missing.toml")
    assert str(caught.value) == f"{tmp_path}/missing.toml: cannot read: No such file or directory"
    assert caught.value.line is None


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "kink.toml"
    path.write_bytes(b"[daemon]\nuser = '\xff'\n")
    with pytest.raises(ConfigError, match=r"kink.toml: not UTF-8: invalid start byte$"):
        load(path)


def test_syntax_error_keeps_line_and_column(tmp_path: Path) -> None:
    assert problems(tmp_path, DAEMON + "port = = 3\n") == ["kink.toml:3:8: Invalid value"]
    assert problems(tmp_path, DAEMON + "[daemon]\n") == [
        "kink.toml:3:8: Cannot declare ('daemon',) twice"
    ]


def test_missing_required_keys(tmp_path: Path) -> None:
    assert problems(tmp_path, "") == ["kink.toml: daemon.address: missing required key"]
    no_addresses = '[daemon]\n[peers.gw]\nprincipal = "kink/gw@R"\n'
    assert problems(tmp_path, no_addresses) == [
        "kink.toml:1: daemon.address: missing required key",
        "kink.toml:2: peers.gw.address: missing required key",
    ]
    assert problems(tmp_path, DAEMON + "[peers.gw]\n") == [
        "kink.toml:3: peers.gw.address: missing required key",
        "kink.toml:3: peers.gw.principal: missing required key",
    ]


def test_unknown_keys_with_suggestions(tmp_path: Path) -> None:
    text = (
        DAEMON
        + "lisen = []\n"  # 3
        + "[defaults]\n"  # 4
        + "lifetme = 3\n"  # 5
        + GW  # 6-8
        + "zzz = 1\n"  # 9
        + "[[peers.gw.proposals]]\n"  # 10
        + 'esp = { encryption = "aes-gcm", keylength = 128 }\n'  # 11
        + "[extra]\n"  # 12
        + "[peer.x]\n"  # 13
    )
    assert problems(tmp_path, text) == [
        "kink.toml:3: daemon.lisen: unknown key (did you mean 'listen'?)",
        "kink.toml:5: defaults.lifetme: unknown key (did you mean 'lifetime_seconds'?)",
        "kink.toml:9: peers.gw.zzz: unknown key",
        "kink.toml:11: peers.gw.proposals[0].esp.keylength: unknown key "
        "(did you mean 'key_length'?)",
        "kink.toml:12: extra: unknown key",
        "kink.toml:13: peer: unknown key (did you mean 'peers'?)",
    ]


def test_wrong_types_and_ranges(tmp_path: Path) -> None:
    text = (
        "[daemon]\n"
        "address = 3\n"
        'port = "910"\n'
        'log_level = "loud"\n'
        'state_dir = "var/lib/kink"\n'
        "retransmit_factor = 0.5\n"
        "delete_on_stop = 1\n"
        "nonce_length = 4\n"
        "rekey_margin = -1\n"
        "dpd_delay = 0\n"
        'listen = ["192.0.2.1", "192.0.2.300"]\n'
        "replay_window = 1979-05-27\n"
        'aes_prf = "rfc"\n'
        "helper_reqid_base = 0xFFFF0001\n"
    )
    assert problems(tmp_path, text) == [
        "kink.toml:2: daemon.address: must be a string, not an integer",
        "kink.toml:3: daemon.port: must be an integer, not a string",
        "kink.toml:4: daemon.log_level: must be one of 'debug', 'info', 'notice', 'warning', "
        "'error', not 'loud'",
        "kink.toml:5: daemon.state_dir: must be an absolute path, not 'var/lib/kink'",
        "kink.toml:6: daemon.retransmit_factor: must be at least 1, not 0.5",
        "kink.toml:7: daemon.delete_on_stop: must be a boolean (true or false), not an integer",
        "kink.toml:8: daemon.nonce_length: must be between 8 and 256, not 4",
        "kink.toml:9: daemon.rekey_margin: must be at least 0, not -1",
        "kink.toml:10: daemon.dpd_delay: must be greater than 0, not 0",
        "kink.toml:11: daemon.listen[1]: '192.0.2.300' is not an IPv4 or IPv6 address",
        "kink.toml:12: daemon.replay_window: must be an integer, not a date",
        "kink.toml:13: daemon.aes_prf: must be one of 'literal', 'truncated', not 'rfc'",
        "kink.toml:14: daemon.helper_reqid_base: must be between 1 and 4294901760, not 4294901761",
    ]


def test_daemon_cross_checks(tmp_path: Path) -> None:
    text = (
        DAEMON
        + 'listen = ["192.0.2.7", "192.0.2.7"]\n'
        + "retransmit_initial = 4\nretransmit_cap = 2\n"
    )
    assert problems(tmp_path, text) == [
        "kink.toml:2: daemon.address: 192.0.2.1 is not one of daemon.listen",
        "kink.toml:3: daemon.listen[1]: 192.0.2.7 is listed twice",
        "kink.toml:5: daemon.retransmit_cap: 2 s is less than retransmit_initial (4 s)",
    ]


def test_tables_of_the_wrong_type(tmp_path: Path) -> None:
    assert problems(tmp_path, "daemon = 1\npeers = 2\ndefaults = 3\n") == [
        "kink.toml:1: daemon: must be a table, not an integer",
        "kink.toml:2: peers: must be a table, not an integer",
        "kink.toml:3: defaults: must be a table, not an integer",
    ]
    assert problems(tmp_path, DAEMON + '[peers]\ngw = 1\n"a.b" = {}\n') == [
        "kink.toml:4: peers.gw: must be a table, not an integer",
        "kink.toml:5: peers.\"a.b\": a peer name is 1-64 letters, digits, '-' or '_'",
    ]


def test_peer_values(tmp_path: Path) -> None:
    text = (
        DAEMON
        + "[peers.gw]\n"  # 3
        + 'address = "gw.example.org"\n'  # 4
        + 'principal = "kink/gw"\n'  # 5
        + 'mode = "tunel"\n'  # 6
        + 'local_subnets = ["10.0.0.1/8", "10.0.0.0/33", 7]\n'  # 7
        + 'protocol = "tcpp"\n'  # 8
        + "remote_port = 70000\n"  # 9
        + 'pfs_group = "modp768"\n'  # 10
        + "lifetime_seconds = 0\n"  # 11
        + 'u2u = "yes"\n'  # 12
        + 'start_action = "route"\n'  # 13
        + 'give_tgt = "true"\n'  # 14
    )
    assert problems(tmp_path, text) == [
        "kink.toml:4: peers.gw.address: 'gw.example.org' is not an IPv4 or IPv6 address",
        "kink.toml:5: peers.gw.principal: 'kink/gw' is not a Kerberos principal like "
        "'kink/gw.example.org@REALM'",
        "kink.toml:6: peers.gw.mode: must be one of 'transport', 'tunnel', not 'tunel'",
        "kink.toml:7: peers.gw.local_subnets[0]: '10.0.0.1/8' has host bits set "
        "(did you mean '10.0.0.0/8'?)",
        "kink.toml:8: peers.gw.protocol: must be one of 'any', 'icmp', 'tcp', 'udp', 'gre', "
        "'icmpv6', 'sctp', not 'tcpp'",
        "kink.toml:9: peers.gw.remote_port: must be between 0 and 65535, not 70000",
        "kink.toml:10: peers.gw.pfs_group: must be one of 'none', 'modp1024', 'modp1536', "
        "'modp2048', 'modp3072', 'modp4096', not 'modp768'",
        "kink.toml:11: peers.gw.lifetime_seconds: must be between 1 and 4294967295, not 0",
        "kink.toml:12: peers.gw.u2u: must be one of 'never', 'allow', 'require', not 'yes'",
        "kink.toml:13: peers.gw.start_action: must be one of 'none', 'trap', 'start', not 'route'",
        "kink.toml:14: peers.gw.give_tgt: must be a boolean (true or false), not a string",
    ]
    bad_subnet = DAEMON + GW + 'mode = "tunnel"\nremote_subnets = ["10.0.0.0/33"]\n'
    assert problems(tmp_path, bad_subnet) == [
        "kink.toml:7: peers.gw.remote_subnets[0]: '10.0.0.0/33' is not a subnet "
        "(CIDR: address/prefix length)"
    ]


def test_peer_cross_checks(tmp_path: Path) -> None:
    text = (
        DAEMON
        + "rekey_margin = 500\n"  # 3
        + GW  # 4-6
        + "lifetime_seconds = 300\n"  # 7
        + "pfs_required = true\n"  # 8
        + "local_port = 80\n"  # 9
        + '[peers.me]\naddress = "192.0.2.1"\nprincipal = "kink/me@R"\n'  # 10-12
        + '[peers.v6]\naddress = "2001:db8::2"\nprincipal = "kink/v6@R"\n'  # 13-15
    )
    assert problems(tmp_path, text) == [
        "kink.toml:7: peers.gw.lifetime_seconds: 300 s is not longer than daemon.rekey_margin "
        "(500 s): the SA would be rekeyed as soon as it is up",
        "kink.toml:8: peers.gw.pfs_required: needs a pfs_group other than 'none'",
        "kink.toml:9: peers.gw.local_port: a port needs protocol 'tcp', 'udp' or 'sctp'",
        "kink.toml:11: peers.me.address: 192.0.2.1 is daemon.address, this host's own",
        "kink.toml:14: peers.v6.address: an IPv6 address, but daemon.address 192.0.2.1 is "
        "IPv4 (the engine negotiates from that one address)",
    ]


def test_transport_mode_selectors(tmp_path: Path) -> None:
    text = DAEMON + GW + 'local_subnets = ["192.0.2.1/32", "10.1.0.0/16"]\n'
    assert problems(tmp_path, text) == [
        "kink.toml:6: peers.gw.local_subnets[1]: 10.1.0.0/16 is not 192.0.2.1/32: transport "
        'mode carries only traffic between the two hosts (use mode = "tunnel")'
    ]


def test_family_mismatch_between_selectors(tmp_path: Path) -> None:
    text = (
        DAEMON
        + GW
        + 'mode = "tunnel"\n'
        + 'local_subnets = ["10.0.0.0/8", "2001:db8::/32"]\n'  # 7
        + 'remote_subnets = ["10.1.0.0/16", "2001:db8:1::/48", "fd00::/8"]\n'  # 8
        + '[peers.b]\naddress = "192.0.2.3"\nprincipal = "kink/b@R"\nmode = "tunnel"\n'
        + 'remote_subnets = ["2001:db8:2::/48"]\n'  # 13
    )
    assert problems(tmp_path, text.replace('"2001:db8::/32"', '"10.9.0.0/16"')) == [
        "kink.toml:8: peers.gw.remote_subnets[1]: IPv6 subnet 2001:db8:1::/48 has no IPv6 "
        "subnet to pair with in local_subnets",
        "kink.toml:8: peers.gw.remote_subnets[2]: IPv6 subnet fd00::/8 has no IPv6 subnet to "
        "pair with in local_subnets",
        "kink.toml:13: peers.b.remote_subnets[0]: IPv6 subnet 2001:db8:2::/48 has no IPv6 "
        "subnet to pair with in local_subnets",
    ]


def test_too_many_policies(tmp_path: Path) -> None:
    text = (
        DAEMON
        + "helper_reqids = 0x10000\n"
        + "".join(
            f'[peers.p{i}]\naddress = "10.{i // 250}.{i % 250}.1"\nprincipal = "kink/p{i}@R"\n'
            for i in range(705)
        )
    )
    assert problems(tmp_path, text) == [
        "kink.toml:4: peers: the peers need more than the 704 blocks of 64 reqids that "
        "daemon.helper_reqids (0x10000) leaves them (one per 64 policies of a peer)"
    ]


def test_reqid_range_past_the_last_reqid(tmp_path: Path) -> None:
    text = DAEMON + "helper_reqid_base = 0xFFFF0000\n"
    assert problems(tmp_path, text) == [
        "kink.toml:3: daemon.helper_reqid_base: helper_reqid_base 0xffff0000 + 0x100000 "
        "reqids go past 0xffffffff"
    ]
    assert problems(tmp_path, text + "helper_reqids = 0x20000\n") == [
        "kink.toml:4: daemon.helper_reqids: helper_reqid_base 0xffff0000 + 0x20000 "
        "reqids go past 0xffffffff"
    ]
    load_text(tmp_path, text + "helper_reqids = 0x10000\n")


def test_duplicate_addresses_and_selectors(tmp_path: Path) -> None:
    text = (
        DAEMON
        + "[defaults]\n"  # 3
        + 'mode = "tunnel"\n'  # 4
        + 'remote_subnets = ["10.0.0.0/8"]\n'  # 5
        + GW  # 6-8
        + '[peers.b]\naddress = "192.0.2.3"\nprincipal = "kink/b@R"\n'  # 9-11
        + '[peers.c]\naddress = "192.0.2.2"\nprincipal = "kink/c@R"\n'  # 12-14
        + 'remote_subnets = ["10.9.0.0/16"]\n'  # 15
    )
    assert problems(tmp_path, text) == [
        "kink.toml:5: defaults.remote_subnets: selectors 192.0.2.1/32 -> 10.0.0.0/8 are "
        "already used by peers.gw (for peers.b)",
        "kink.toml:13: peers.c.address: 192.0.2.2 is already the address of peers.gw",
    ]
    same = DAEMON + GW + "\n[peers.b]\naddress = '192.0.2.2'\nprincipal = 'kink/b@R'\n"
    assert problems(tmp_path, same.replace("'192.0.2.2'", '"192.000.2.2"')) == [
        "kink.toml:8: peers.b.address: '192.000.2.2' is not an IPv4 or IPv6 address"
    ]
    v6 = (
        '[daemon]\naddress = "2001:db8::1"\n'
        '[peers.a]\naddress = "2001:db8::2"\nprincipal = "kink/a@R"\n'
        '[peers.b]\naddress = "2001:DB8:0:0::2"\nprincipal = "kink/b@R"\n'
    )
    assert problems(tmp_path, v6) == [
        "kink.toml:7: peers.b.address: 2001:db8::2 is already the address of peers.a"
    ]


def test_inherited_value_wrong_for_one_peer(tmp_path: Path) -> None:
    text = DAEMON + "[defaults]\nlocal_port = 22\n" + GW + 'protocol = "tcp"\n'
    text += '[peers.b]\naddress = "192.0.2.3"\nprincipal = "kink/b@R"\n'
    assert problems(tmp_path, text) == [
        "kink.toml:4: defaults.local_port: a port needs protocol 'tcp', 'udp' or 'sctp' "
        "(for peers.b)"
    ]


def test_bad_defaults_reported_once(tmp_path: Path) -> None:
    text = DAEMON + '[defaults]\nmode = "x"\n' + GW
    text += '[peers.b]\naddress = "192.0.2.3"\nprincipal = "kink/b@R"\n'
    assert problems(tmp_path, text) == [
        "kink.toml:4: defaults.mode: must be one of 'transport', 'tunnel', not 'x'"
    ]
    assert problems(tmp_path, '[defaults]\nmode = "x"\n') == [  # no line: last
        "kink.toml:2: defaults.mode: must be one of 'transport', 'tunnel', not 'x'",
        "kink.toml: daemon.address: missing required key",
    ]


def proposal_problems(tmp_path: Path, proposals: str) -> list[str]:
    return problems(tmp_path, DAEMON + GW + proposals)


def test_proposal_errors(tmp_path: Path) -> None:
    cases = {
        "proposals = []": "kink.toml:6: peers.gw.proposals: must hold at least one proposal",
        'proposals = "esp"': "kink.toml:6: peers.gw.proposals: must be an array of tables, "
        "not a string",
        "proposals = [1]": "kink.toml:6: peers.gw.proposals[0]: must be a table, not an integer",
        "proposals = [{}]": "kink.toml:6: peers.gw.proposals[0]: needs an 'esp' table, an 'ah' "
        "table or both",
        "proposals = [{ esp = {} }]": "kink.toml:6: peers.gw.proposals[0].esp.encryption: "
        "missing required key",
        'proposals = [{ esp = { encryption = "des" } }]': "kink.toml:6: "
        "peers.gw.proposals[0].esp.encryption: must be one of 'aes-cbc', 'aes-gcm', "
        "'aes-gcm-12', 'aes-gcm-8', 'null', not 'des'",
        'proposals = [{ esp = { encryption = "aes-cbc" } }]': "kink.toml:6: "
        "peers.gw.proposals[0].esp.integrity: required with encryption 'aes-cbc'",
        'proposals = [{ esp = { encryption = "aes-gcm", integrity = "sha1" } }]': "kink.toml:6: "
        "peers.gw.proposals[0].esp.integrity: not allowed with encryption 'aes-gcm'",
        'proposals = [{ esp = { encryption = "null", key_length = 128 } }]': "kink.toml:6: "
        "peers.gw.proposals[0].esp.key_length: not allowed with encryption 'null'",
        'proposals = [{ esp = { encryption = "aes-gcm", key_length = 64 } }]': "kink.toml:6: "
        "peers.gw.proposals[0].esp.key_length: must be 128, 192 or 256, not 64",
        'proposals = [{ esp = { encryption = "aes-gcm", key_length = "256" } }]': "kink.toml:6: "
        "peers.gw.proposals[0].esp.key_length: must be an integer, not a string",
        'proposals = [{ ah = { integrity = "md5" } }]': "kink.toml:6: "
        "peers.gw.proposals[0].ah.integrity: must be one of 'sha1', 'sha256', 'sha384', "
        "'sha512', not 'md5'",
        "proposals = [{ ah = {} }]": "kink.toml:6: peers.gw.proposals[0].ah.integrity: "
        "missing required key",
        'proposals = [{ ah = "sha1" }]': "kink.toml:6: peers.gw.proposals[0].ah: must be a "
        "table, not a string",
        'proposals = [{ ah = { integrity = "sha1", encryption = "null" } }]': "kink.toml:6: "
        "peers.gw.proposals[0].ah.encryption: unknown key",
    }
    for proposals, message in cases.items():
        assert proposal_problems(tmp_path, proposals + "\n") == [message], proposals


def test_proposal_errors_point_at_array_of_tables_lines(tmp_path: Path) -> None:
    text = (
        "[[peers.gw.proposals]]\n"  # 6
        'esp = { encryption = "aes-gcm" }\n'  # 7
        "[[peers.gw.proposals]]\n"  # 8
        "[peers.gw.proposals.esp]\n"  # 9
        'encryption = "aes-cbc"\n'  # 10
        "key_length = 256\n"  # 11
        'integrity = "sha2"\n'  # 12
    )
    assert proposal_problems(tmp_path, text) == [
        "kink.toml:12: peers.gw.proposals[1].esp.integrity: must be one of 'sha1', 'sha256', "
        "'sha384', 'sha512', not 'sha2'"
    ]
    assert proposal_problems(tmp_path, "[[peers.gw.proposals]]\n[peers.gw.proposals.ah]\n") == [
        "kink.toml:7: peers.gw.proposals[0].ah.integrity: missing required key"
    ]


def test_unsupported_combination_is_refused_by_the_crypto_layer(tmp_path: Path) -> None:
    # Every combination the loader accepts is one kink.crypto.algorithms can key; the loader
    # passes each through sa_algorithms. Enumerate them all: none may fail later.
    from itertools import product

    from kink.crypto.algorithms import TransformParams, sa_algorithms
    from kink.daemon.config import load as load_config

    encryptions = ["aes-cbc", "aes-gcm", "aes-gcm-12", "aes-gcm-8", "null"]
    integrities = [None, "sha1", "sha256", "sha384", "sha512"]
    for encryption, integrity, bits in product(encryptions, integrities, [None, 128, 192, 256]):
        esp = f'encryption = "{encryption}"'
        if integrity:
            esp += f', integrity = "{integrity}"'
        if bits:
            esp += f", key_length = {bits}"
        path = write(tmp_path, DAEMON + GW + f"proposals = [{{ esp = {{ {esp} }} }}]\n")
        try:
            config = load_config(path)
        except ConfigError:
            continue
        for spec in config.engine.peers[0].proposals[0].transforms:
            params = TransformParams(spec.transform_id, spec.auth_algorithm, spec.key_length)
            sa_algorithms(spec.protocol, params)
