"""`./scripts/demo`: a throwaway Kerberos realm, two hosts running kinkd and kink-privsep, SAs
negotiated over UDP 910, ESP traffic, and what `kinkctl` shows on both hosts.

The host side (__main__) picks the machine: the running kernel, inside a private network and
mount namespace, when it has ESP (machine.py probes it); a user-mode Linux kernel otherwise
(tests/support/uml.py). The inside (inside.py) is the same on both: the topology of the
end-to-end suite (tests/support/e2e.py), both daemons per host, traffic, kinkctl.
"""
