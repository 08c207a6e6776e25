"""kink.crypto.entropy: octets from the OS's CSPRNG handed out once each, wiped from the buffer,
never repeated by a forked child."""

import os
import random
import threading

import pytest

from kink.crypto import entropy
from kink.crypto.entropy import BLOCK, PooledRandom, random_bytes


def test_octets_handed_out_are_wiped_from_the_buffer() -> None:
    random_bytes(BLOCK)  # a fresh buffer next
    first = random_bytes(32)
    second = random_bytes(16)
    buffer = entropy._buffer
    assert buffer.at == 48
    assert buffer.data[:48] == bytes(48)  # both handed out, neither left behind
    assert any(buffer.data[48:])  # the rest still to hand out
    assert first not in buffer.data and second not in buffer.data
    assert len(first) == 32 and len(second) == 16 and first[:16] != second


def test_a_refill_wipes_what_was_left_and_requests_larger_than_a_block_are_served() -> None:
    random_bytes(BLOCK)
    random_bytes(BLOCK - 8)
    left = bytes(entropy._buffer.data)  # 8 octets not handed out
    old = entropy._buffer.data
    assert len(random_bytes(16)) == 16  # more than is left: a new block
    assert old == bytes(BLOCK)  # the 8 octets were wiped, not handed out
    assert entropy._buffer.data is not old and entropy._buffer.at == 16
    assert any(left)
    big = random_bytes(3 * BLOCK)
    assert len(big) == 3 * BLOCK and any(big)


def test_values_do_not_repeat() -> None:
    values = {random_bytes(16) for _ in range(2000)}  # spans several blocks
    assert len(values) == 2000


def test_a_forked_child_never_hands_out_the_parents_octets() -> None:
    random_bytes(1)  # the buffer holds octets not handed out yet
    reading, writing = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next octets, to the parent
        try:
            os.write(writing, random_bytes(64) + bytes([entropy._buffer.at]))
        finally:
            os._exit(0)
    os.close(writing)
    try:
        child = b""
        while len(child) < 65:
            part = os.read(reading, 65 - len(child))
            assert part
            child += part
    finally:
        os.close(reading)
        os.waitpid(pid, 0)
    ours = random_bytes(64)  # the parent's next octets, the ones the child would have had
    assert child[:64] != ours
    assert child[64] == 64  # the child read a block of its own


def test_each_thread_has_its_own_buffer() -> None:
    random_bytes(1)
    ours = entropy._buffer.at
    seen: list[int] = []

    def other() -> None:
        random_bytes(10)
        seen.append(entropy._buffer.at)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen == [10]
    assert entropy._buffer.at == ours


def test_pooled_random_draws_as_system_random() -> None:
    rng = PooledRandom()
    assert isinstance(rng, random.SystemRandom)
    draws = [rng.randrange(0x100, 2**32) for _ in range(1000)]
    assert all(0x100 <= d < 2**32 for d in draws) and len(set(draws)) == 1000
    assert all(0 <= rng.random() < 1 for _ in range(1000))
    assert all(rng.getrandbits(k) < 2**k for k in (1, 7, 8, 9, 32, 61) for _ in range(100))
    assert rng.getrandbits(0) == 0
    assert max(rng.getrandbits(3) for _ in range(200)) == 7  # the top bits are used
    assert len(rng.randbytes(20)) == 20
    with pytest.raises(ValueError):
        rng.getrandbits(-1)
