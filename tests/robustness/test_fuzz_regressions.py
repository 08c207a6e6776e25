"""The fuzz targets (fuzz/targets.py) on their seed corpora and on what fuzzing and the hostile
corpora turned up: each finding stays here as a regression test."""

import msgpack
import pytest

from fuzz import seeds, targets
from kink_privsep import protocol


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_every_seed_passes_its_target(name: str) -> None:
    corpus = seeds.SEEDS[name]()
    assert len(corpus) > 10
    for seed in corpus:
        targets.TARGETS[name](seed)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_every_truncation_of_every_seed(name: str) -> None:
    target = targets.TARGETS[name]
    for seed in seeds.SEEDS[name]():
        for size in range(0, len(seed), 3):
            target(seed[:size])


@pytest.mark.parametrize("version", [1.0, True], ids=["float", "bool"])
def test_a_version_that_only_equals_1_is_refused(version: object) -> None:
    """Found by the hostile helper messages: "v": 1.0 and "v": true passed as version 1,
    since Python compares them equal to 1. The envelope's "v" is a msgpack int."""
    data = msgpack.packb({"v": version, "id": 3, "op": "hello", "args": {}})
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.decode_request(data)
    assert (e.value.code, e.value.req_id) == (protocol.ERR_VERSION, 3)
    targets.privsep(data)
