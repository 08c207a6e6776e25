"""`kinkctl terminate PEER|SPI`: delete SAs, telling the peer."""

from kink.ctl import target
from kink.ctl.connect import EXIT_CODES_HELP

_DESCRIPTION = f"""\
Delete the SAs of a peer, or the SA bundle an SPI belongs to, with a KINK DELETE to the peer
(RFC 4430 §3.3) so that it deletes its side too. A peer with start_action = "start" or "trap"
keeps its policies and negotiates again when traffic (or kinkd) asks for it.

{target.HELP}

With --json: {{"children": N}}, the number of SA bundles being deleted (the control protocol's
`terminate` result). No SA matching is an error (exit 1).

{EXIT_CODES_HELP}"""


COMMAND = target.bundle_command(
    name="terminate",
    summary="delete the SAs of a peer or of one SPI (KINK DELETE)",
    description=_DESCRIPTION,
    doing="deleting",
)
