"""`python -m kink.ctl` runs kinkctl."""

import sys

from kink.ctl.cli import main

sys.exit(main())
