"""How kinkctl shows values to people: sizes in KiB/MiB, durations as 1h02m, SPIs as
0x-prefixed 8 hex digits (as kinkd logs them, and as `kinkctl terminate` accepts them back),
times in local time. An absent value (null in the control protocol) is "-"."""

import time

ABSENT = "-"
_SIZE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def size(octets: int | None) -> str:
    """1023 -> "1023 B", 1536 -> "1.5 KiB", 5 << 20 -> "5.0 MiB"."""
    if octets is None:
        return ABSENT
    if octets < 1024:
        return f"{octets} B"
    value = float(octets)
    for unit in _SIZE_UNITS:
        value /= 1024
        if value < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable: the last unit always returns")


def duration(seconds: float | None) -> str:
    """The two leading units: 45s, 3m07s, 1h02m, 2d03h; negative values are "overdue"
    (a rekey that is due but not yet done)."""
    if seconds is None:
        return ABSENT
    if seconds < 0:
        return "overdue"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def spi(value: int | None) -> str:
    return ABSENT if value is None else f"{value:#010x}"


def epoch(value: int | None) -> str:
    """An epoch (RFC 4430 §3.7, 32 bits) as kinkd logs it."""
    return ABSENT if value is None else f"{value:#010x}"


def count(value: int | None) -> str:
    return ABSENT if value is None else str(value)


def local_time(unix: float, *, millis: bool = False) -> str:
    """ "2025-06-01 12:00:00" (".123" with millis) in the local time zone."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))
    return f"{stamp}.{int(unix * 1000) % 1000:03d}" if millis else stamp


def endpoint(host: str, port: int) -> str:
    """ "192.0.2.1:910", "[2001:db8::1]:910"."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
