"""Random octets and integers for values that are public or used once, read from the OS's
CSPRNG a block at a time.

Why: os.urandom is one getrandom(2) system call per value, and kinkd draws several per SA pair
(the SPI, the nonce Ni or Nr, the confounder of each KINK_ENCRYPT); in user-mode Linux a system
call costs some 25 us (issue 9). Here one call brings BLOCK octets, handed out in order.

Why this is safe for what uses it:
- The source is the same: every octet handed out comes from os.urandom (the kernel's CSPRNG),
  unchanged and exactly once; no generator of ours stretches it.
- The values are public or single-use: SPIs (in every ESP header), the nonces Ni and Nr (RFC
  4430 §4.2.3: freshness for KEYMAT, whose secrecy is the Kerberos session key's, or DH's),
  the confounder of each RFC 3961 encryption. Their unpredictability is what matters, and an
  octet read from the kernel earlier is as unpredictable to whoever did not see it as a fresh
  one. Keys (DH private values, session keys) do not come from here: they stay with the
  libraries that make them (cryptography, libkrb5).
- Octets handed out are wiped from the buffer at once: a later leak of the process's memory
  (a core dump) shows only those not handed out yet.
- Each thread has its own buffer (no lock: CPython 3.11 reads the clock on every lock
  acquire, another system call), so two threads never share an octet.
- A forked child starts with no buffer (os.register_at_fork): it never hands out octets its
  parent read, which the parent hands out too.
"""

import os
import random
import threading

BLOCK = 4096  # octets read from the OS at a time; a request larger than this is its own read


class _Buffer(threading.local):
    """A thread's octets read from the OS and not handed out yet: data[at:]."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.at = 0


_buffer = _Buffer()


def _forked() -> None:
    """In a forked child: the buffers copied from the parent are never used (the parent hands
    out the same octets), the forking thread's is wiped."""
    global _buffer
    mine = _buffer
    mine.data[:] = bytes(len(mine.data))
    _buffer = _Buffer()


os.register_at_fork(after_in_child=_forked)


def random_bytes(n: int) -> bytes:
    """`n` octets from the OS's CSPRNG (for a value that is public or used once: see above)."""
    if n > BLOCK:
        return os.urandom(n)
    buffer = _buffer
    data, at = buffer.data, buffer.at
    end = at + n
    if end > len(data):
        data[:] = bytes(len(data))  # what is left is dropped, wiped
        data = buffer.data = bytearray(os.urandom(BLOCK))
        at, end = 0, n
    out = bytes(data[at:end])
    data[at:end] = bytes(n)  # handed out: not in the buffer any more
    buffer.at = end
    return out


class PooledRandom(random.SystemRandom):
    """random.SystemRandom drawing its octets through random_bytes: the same uniform
    integers and floats from the OS's CSPRNG, without a system call per draw."""

    def random(self) -> float:
        # As random.SystemRandom.random: 53 random bits as a float in [0, 1).
        return (int.from_bytes(random_bytes(7)) >> 3) * 2.0**-53

    def getrandbits(self, k: int) -> int:
        # As random.SystemRandom.getrandbits: the top k bits of ceil(k / 8) random octets.
        if k < 0:
            raise ValueError("number of bits must be non-negative")
        size = (k + 7) // 8
        return int.from_bytes(random_bytes(size)) >> (size * 8 - k)

    def randbytes(self, n: int) -> bytes:
        return random_bytes(n)
