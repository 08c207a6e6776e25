"""Diffie-Hellman MODP groups: the primes, agreement, and refusal of bad peer values."""

import pytest

from kink.crypto.dh import GENERATOR, PRIMES, DhExchange
from kink.crypto.errors import CryptoError, UnsupportedGroup

# group -> (bits, k) of p = 2^n - 2^(n-64) - 1 + 2^64 * ([2^(n-130) pi] + k),
# RFC 2409 §6.2 and RFC 3526 §2-5
FORMULAS = {
    2: (1024, 129093),
    5: (1536, 741804),
    14: (2048, 124476),
    15: (3072, 1690314),
    16: (4096, 240904),
}


def _arctan_inverse(x: int, one: int) -> int:
    """arctan(1/x) * one, by its Taylor series in fixed point."""
    total, term, n, sign = 0, one // x, 1, 1
    while term:
        total += sign * (term // n)
        term //= x * x
        n += 2
        sign = -sign
    return total


def floor_pi_times_power_of_two(exponent: int) -> int:
    """[2^exponent * pi], by Machin's formula pi = 16 arctan(1/5) - 4 arctan(1/239)."""
    guard = 64
    one = 1 << (exponent + guard)
    pi = 16 * _arctan_inverse(5, one) - 4 * _arctan_inverse(239, one)
    return pi >> guard


def test_pi_helper() -> None:
    assert floor_pi_times_power_of_two(0) == 3
    assert floor_pi_times_power_of_two(20) == 3294198  # 3.14159265... * 2^20


@pytest.mark.parametrize("group", sorted(FORMULAS))
def test_primes_follow_the_rfc_formulas(group: int) -> None:
    bits, k = FORMULAS[group]
    expected = (
        2**bits - 2 ** (bits - 64) - 1 + 2**64 * (floor_pi_times_power_of_two(bits - 130) + k)
    )
    assert PRIMES[group] == expected
    assert PRIMES[group].bit_length() == bits
    assert GENERATOR == 2


def test_offered_groups() -> None:
    assert sorted(PRIMES) == [2, 5, 14, 15, 16]


@pytest.mark.parametrize("group", sorted(FORMULAS))
def test_both_sides_agree(group: int) -> None:
    length = FORMULAS[group][0] // 8
    initiator, responder = DhExchange(group), DhExchange(group)
    assert initiator.group == group
    assert len(initiator.public_bytes()) == length
    assert initiator.public_bytes() != responder.public_bytes()
    secret = initiator.shared_secret(responder.public_bytes())
    assert secret == responder.shared_secret(initiator.public_bytes())
    assert len(secret) == length
    assert secret != initiator.shared_secret(DhExchange(group).public_bytes())


def test_secret_is_g_to_the_xy() -> None:
    # Against plain modular arithmetic: the peer's private value is known here.
    group = 14
    prime = PRIMES[group]
    ours = DhExchange(group)
    peer_private = 0x1234567890ABCDEF1234567890ABCDEF
    peer_public = pow(GENERATOR, peer_private, prime).to_bytes(256, "big")
    y = int.from_bytes(ours.public_bytes(), "big")
    expected = pow(y, peer_private, prime).to_bytes(256, "big")
    assert ours.shared_secret(peer_public) == expected


def test_small_public_value_is_left_padded() -> None:
    # g^1 = 2 is a valid (if silly) public value: 255 zero octets then 2.
    ours = DhExchange(14)
    secret = ours.shared_secret((2).to_bytes(256, "big"))
    assert len(secret) == 256
    assert int.from_bytes(secret, "big") == int.from_bytes(ours.public_bytes(), "big")


@pytest.mark.parametrize("group", [2, 14])
def test_bad_peer_values_are_refused(group: int) -> None:
    prime = PRIMES[group]
    length = (prime.bit_length() + 7) // 8
    ours = DhExchange(group)
    for value in (0, 1, prime - 1, prime, 2 ** (8 * length) - 1):
        with pytest.raises(CryptoError, match="out of range"):
            ours.shared_secret(value.to_bytes(length, "big"))
    valid = DhExchange(group).public_bytes()
    for wrong in (valid[1:], b"\0" + valid, b""):
        with pytest.raises(CryptoError, match="octets"):
            ours.shared_secret(wrong)


@pytest.mark.parametrize("group", [1, 17, 18, 19, 0])
def test_other_groups_are_refused(group: int) -> None:
    with pytest.raises(UnsupportedGroup, match=f"group {group} is not offered"):
        DhExchange(group)


def test_repr_hides_the_private_key() -> None:
    exchange = DhExchange(5)
    assert repr(exchange) == "DhExchange(group=5)"
    assert not any("private" in name and not name.startswith("_") for name in dir(exchange))
