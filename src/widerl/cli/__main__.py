"""`python -m widerl.cli`: the `widerl` command."""

import sys

from widerl.cli.commands import main

sys.exit(main())
