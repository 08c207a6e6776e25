"""n-fold, RFC 3961 §5.1: stretch or shrink a constant to the cipher's block size.

Used by the RFC 3962 key derivation (DK) to turn the usage constant, "kerberos" and "prf" into
one 128-bit AES block. Test vectors: RFC 3961 App. A.1.
"""

import math


def nfold(data: bytes, nbytes: int) -> bytes:
    """n-fold `data` to `nbytes` octets (RFC 3961 §5.1)."""
    inbytes = len(data)
    if inbytes == 0 or nbytes <= 0:
        raise ValueError("n-fold needs a non-empty input and a positive output length")
    width = inbytes * 8
    value = int.from_bytes(data, "big")
    lcm = math.lcm(inbytes, nbytes)
    # Replicate the input to lcm octets, copy i rotated right by 13*i bits ...
    copies = []
    for i in range(lcm // inbytes):
        shift = (13 * i) % width
        rotated = ((value >> shift) | (value << (width - shift))) & ((1 << width) - 1)
        copies.append(rotated.to_bytes(inbytes, "big"))
    stretched = b"".join(copies)
    # ... then add the nbytes-sized pieces with ones'-complement (end-around carry) addition.
    outbits = nbytes * 8
    mask = (1 << outbits) - 1
    total = sum(
        int.from_bytes(stretched[off : off + nbytes], "big") for off in range(0, lcm, nbytes)
    )
    while total > mask:
        total = (total & mask) + (total >> outbits)
    return total.to_bytes(nbytes, "big")
