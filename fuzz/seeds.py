"""Seed corpora: real inputs for each target, so the fuzzer starts deep inside the parsers.

wire: every KINK datagram of the racoon2 interop captures (tests/wire/data/*.pcap), each also
with its KINK_ENCRYPT ciphertext replaced by the captured plaintext (see fuzz.targets.wire),
and their decrypted plaintexts on their own.
privsep: the valid requests of the helper's test suite (tests/privsep/test_validation.py),
plus the argument-less operations.
"""

import dataclasses
import hashlib
from pathlib import Path

from kink.wire import decode, encode
from kink_privsep import protocol
from tests.privsep.test_validation import GOOD
from tests.wire.captures import ROWS, plaintexts, raw


def wire_seeds() -> list[bytes]:
    texts = plaintexts()
    seeds = []
    for row in ROWS:
        data = raw(row)
        seeds.append(data)
        if row.id in texts:
            inner = dataclasses.replace(decode(data), ciphertext=texts[row.id])
            seeds.append(encode(inner))
            seeds.append(texts[row.id])
    return seeds


def privsep_seeds() -> list[bytes]:
    seeds = [protocol.encode_request(i, op, args) for i, (op, args) in enumerate(GOOD, 1)]
    for op in ("hello", "dump", "flush"):
        seeds.append(protocol.encode_request(1, op, {}))
    seeds.append(protocol.encode_request(2, "dump", {"what": "sa"}))
    return seeds


SEEDS = {"wire": wire_seeds, "privsep": privsep_seeds}


def write(target: str, directory: Path) -> int:
    """Add the target's seeds to `directory` (named by content, as libFuzzer names its own);
    the number of seeds."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds = SEEDS[target]()
    for seed in seeds:
        (directory / hashlib.sha1(seed).hexdigest()).write_bytes(seed)
    return len(seeds)
