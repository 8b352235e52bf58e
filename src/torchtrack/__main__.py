"""`python -m torchtrack ...`: the same as the `torchtrack` command."""

import sys

from torchtrack.cli import main

sys.exit(main())
