"""`python -m torchtrack ...`: the same as the `torchtrack` command, and how dvc runs each stage.

A stage ends promptly: when `main` returns, its Tracker is closed (every metric, run status,
artifact and TensorBoard event written) and its outputs are renamed into place, so all that
is left is the interpreter tearing down torch and MLflow, over a second of CPU per stage
(`make bench`). `os._exit` skips that teardown, once the output streams are flushed.
"""

import os
import sys

from torchtrack.cli import STAGES, main

code = main()
if sys.argv[1:2] and sys.argv[1] in STAGES:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
