"""kink: KINK (RFC 4430), Kerberized Internet Negotiation of Keys, for Linux."""

__version__ = "0.1.0"
