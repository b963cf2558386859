"""``python -m bench <name> [flags]``: see bench/README.md."""

import sys

from bench.cli import main

sys.exit(main())
