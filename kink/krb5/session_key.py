"""The ticket session key handed to the layers above (RFC 4430 §7: the only key KINK uses)."""

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class SessionKey:
    """An RFC 3961 protocol key: `enctype` (e.g. 17, 18, 19, 20) and its raw key bytes.

    Shaped like kink.crypto.rfc3961.Key(enctype, material) so the engine converts it field for
    field; the material never appears in a repr.
    """

    enctype: int
    material: bytes = field(repr=False)
