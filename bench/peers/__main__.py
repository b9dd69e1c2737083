"""``python -m bench.peers``: see :func:`bench.peers._harness.main`."""

from __future__ import annotations

import sys

from ._harness import main

if __name__ == "__main__":
    sys.exit(main())
