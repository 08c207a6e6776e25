"""`./scripts/demo`: a throwaway Kerberos realm, two hosts, KINK SAs negotiated, ESP traffic.

The host side (__main__) boots a user-mode Linux kernel (tests/support/uml.py) and prints what
the inside (inside.py) reports while it runs. Inside UML everything is real: an MIT KDC, two
kink protocol engines exchanging KINK datagrams, one kink_privsep helper per host programming
XFRM, and UDP datagrams between two network namespaces protected by ESP.
"""
