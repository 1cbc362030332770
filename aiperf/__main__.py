"""``python -m aiperf`` is the ``aiperf`` command."""

import sys

from aiperf.cli import main

sys.exit(main())
