"""Entry point of `python -m generator` and the `launch-agent-values` script."""

from __future__ import annotations

import sys

from generator.cli import main

if __name__ == "__main__":
    sys.exit(main())
