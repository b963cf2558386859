"""``python -m gateway``: the ``asr-gateway`` command line.

Layer: shell.
"""

import sys

from gateway.cli import main

sys.exit(main())
