"""MIT libk5crypto through ctypes, to cross-check kink.crypto in tests only.

Calls krb5_c_encrypt / krb5_c_decrypt / krb5_c_make_checksum / krb5_c_prf on raw keyblocks,
the same public API libkrb5 uses for tickets (krb5.h).
"""

import ctypes
import ctypes.util
from typing import Any


class _Data(ctypes.Structure):
    _fields_ = (
        ("magic", ctypes.c_int32),
        ("length", ctypes.c_uint),
        ("data", ctypes.c_void_p),
    )


class _Keyblock(ctypes.Structure):
    _fields_ = (
        ("magic", ctypes.c_int32),
        ("enctype", ctypes.c_int32),
        ("length", ctypes.c_uint),
        ("contents", ctypes.c_void_p),
    )


class _Checksum(ctypes.Structure):
    _fields_ = (
        ("magic", ctypes.c_int32),
        ("checksum_type", ctypes.c_int32),
        ("length", ctypes.c_uint),
        ("contents", ctypes.c_void_p),
    )


class _EncData(ctypes.Structure):
    _fields_ = (
        ("magic", ctypes.c_int32),
        ("enctype", ctypes.c_int32),
        ("kvno", ctypes.c_uint),
        ("ciphertext", _Data),
    )


class MitError(Exception):
    """A libkrb5 call returned an error code."""


def _load(name: str) -> ctypes.CDLL:
    path = ctypes.util.find_library(name)
    if path is None:
        raise OSError(f"lib{name} not found")
    return ctypes.CDLL(path)


class MitK5Crypto:
    """One krb5_context and the krb5_c_* calls the tests compare against."""

    def __init__(self) -> None:
        self._krb5 = _load("krb5")
        self._k5 = _load("k5crypto")
        ptr, i32, size_p = ctypes.c_void_p, ctypes.c_int32, ctypes.POINTER(ctypes.c_size_t)
        prototypes: dict[str, tuple[Any, ...]] = {
            "krb5_c_encrypt_length": (ptr, i32, ctypes.c_size_t, size_p),
            "krb5_c_encrypt": (ptr, ptr, i32, ptr, ptr, ptr),
            "krb5_c_decrypt": (ptr, ptr, i32, ptr, ptr, ptr),
            "krb5_c_make_checksum": (ptr, i32, ptr, i32, ptr, ptr),
            "krb5_free_checksum_contents": (ptr, ptr),
            "krb5_c_prf_length": (ptr, i32, size_p),
            "krb5_c_prf": (ptr, ptr, ptr, ptr),
        }
        for name, argtypes in prototypes.items():
            frees = name.startswith("krb5_free")  # memory helpers live in libkrb5
            fn = getattr(self._krb5 if frees else self._k5, name)
            fn.argtypes = argtypes
            fn.restype = None if frees else i32
        self._ctx = ctypes.c_void_p()
        self._check(self._krb5.krb5_init_context(ctypes.byref(self._ctx)), "krb5_init_context")

    def close(self) -> None:
        self._krb5.krb5_free_context(self._ctx)

    @staticmethod
    def _check(code: int, what: str) -> None:
        if code != 0:
            raise MitError(f"{what} failed: {code}")

    @staticmethod
    def _data(buf: Any, length: int) -> _Data:
        return _Data(0, length, ctypes.cast(buf, ctypes.c_void_p))

    def _keyblock(self, enctype: int, key: bytes) -> tuple[_Keyblock, Any]:
        buf = ctypes.create_string_buffer(key, len(key))
        return _Keyblock(0, enctype, len(key), ctypes.cast(buf, ctypes.c_void_p)), buf

    def encrypt(self, enctype: int, key: bytes, usage: int, plaintext: bytes) -> bytes:
        kb, _kbuf = self._keyblock(enctype, key)
        inbuf = ctypes.create_string_buffer(plaintext, len(plaintext))
        size = ctypes.c_size_t()
        self._check(
            self._k5.krb5_c_encrypt_length(self._ctx, enctype, len(plaintext), ctypes.byref(size)),
            "krb5_c_encrypt_length",
        )
        outbuf = ctypes.create_string_buffer(size.value)
        out = _EncData(0, enctype, 0, self._data(outbuf, size.value))
        indata = self._data(inbuf, len(plaintext))
        self._check(
            self._k5.krb5_c_encrypt(
                self._ctx, ctypes.byref(kb), usage, None, ctypes.byref(indata), ctypes.byref(out)
            ),
            "krb5_c_encrypt",
        )
        return outbuf.raw[: out.ciphertext.length]

    def decrypt(self, enctype: int, key: bytes, usage: int, ciphertext: bytes) -> bytes:
        kb, _kbuf = self._keyblock(enctype, key)
        inbuf = ctypes.create_string_buffer(ciphertext, len(ciphertext))
        enc = _EncData(0, enctype, 0, self._data(inbuf, len(ciphertext)))
        outbuf = ctypes.create_string_buffer(len(ciphertext))
        out = self._data(outbuf, len(ciphertext))
        self._check(
            self._k5.krb5_c_decrypt(
                self._ctx, ctypes.byref(kb), usage, None, ctypes.byref(enc), ctypes.byref(out)
            ),
            "krb5_c_decrypt",
        )
        return outbuf.raw[: out.length]

    def make_checksum(
        self, cksumtype: int, enctype: int, key: bytes, usage: int, data: bytes
    ) -> bytes:
        kb, _kbuf = self._keyblock(enctype, key)
        inbuf = ctypes.create_string_buffer(data, len(data))
        indata = self._data(inbuf, len(data))
        cksum = _Checksum()
        self._check(
            self._k5.krb5_c_make_checksum(
                self._ctx,
                cksumtype,
                ctypes.byref(kb),
                usage,
                ctypes.byref(indata),
                ctypes.byref(cksum),
            ),
            "krb5_c_make_checksum",
        )
        try:
            if cksum.checksum_type != cksumtype:
                raise MitError(f"asked for cksumtype {cksumtype}, got {cksum.checksum_type}")
            return ctypes.string_at(cksum.contents, cksum.length)
        finally:
            self._krb5.krb5_free_checksum_contents(self._ctx, ctypes.byref(cksum))

    def prf(self, enctype: int, key: bytes, data: bytes) -> bytes:
        kb, _kbuf = self._keyblock(enctype, key)
        size = ctypes.c_size_t()
        self._check(
            self._k5.krb5_c_prf_length(self._ctx, enctype, ctypes.byref(size)),
            "krb5_c_prf_length",
        )
        inbuf = ctypes.create_string_buffer(data, len(data))
        indata = self._data(inbuf, len(data))
        outbuf = ctypes.create_string_buffer(size.value)
        out = self._data(outbuf, size.value)
        self._check(
            self._k5.krb5_c_prf(
                self._ctx, ctypes.byref(kb), ctypes.byref(indata), ctypes.byref(out)
            ),
            "krb5_c_prf",
        )
        return outbuf.raw[: out.length]
