"""KINK's cryptography, sans-IO, on `cryptography` and the standard library.

- `rfc3961`: Kerberos encryption, checksum and PRF of the session key (RFC 3961/3962/8009),
  used for KINK_ENCRYPT (key usage 39) and the Cksum field (key usage 40), RFC 4430 §8.
- `keymat`: IPsec KEYMAT from the session key (RFC 4430 §7, RFC 2409 §5.5).
- `algorithms`: what a negotiated ISAKMP transform needs from KEYMAT and XFRM.
- `dh`: the optional Quick Mode Diffie-Hellman exchange (RFC 2409 §6, RFC 3526).
- `errors`: the one exception family of this layer.
"""
