"""`kinkctl rekey PEER|SPI`: replace SAs with fresh ones now."""

from kink.ctl import target
from kink.ctl.connect import EXIT_CODES_HELP

_DESCRIPTION = f"""\
Rekey the SAs of a peer, or the SA bundle an SPI belongs to, now instead of at the end of
their soft lifetime: a new CREATE, then a DELETE of the old SAs once the new ones are in place
(RFC 4430 §3.6). The new SPIs show in `kinkctl monitor` (sa-up, rekey of the old bundle) and
`kinkctl sas`.

{target.HELP}

With --json: {{"children": N}}, the number of SA bundles being rekeyed (the control protocol's
`rekey` result). No SA matching is an error (exit 1).

{EXIT_CODES_HELP}"""


COMMAND = target.bundle_command(
    name="rekey",
    summary="rekey the SAs of a peer or of one SPI now",
    description=_DESCRIPTION,
    doing="rekeying",
)
