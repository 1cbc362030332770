"""aiperf: an AutoML benchmark that ranks AI clusters by the AI compute they sustain.

See README.md for how to run it and ``docs/design.md`` for how it works. Subpackages are imported on demand so that
the master and the CLI start without loading torch.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
