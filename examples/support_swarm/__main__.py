"""``python examples/support_swarm`` (what ``python examples/support_swarm.py`` runs)."""

from __future__ import annotations

import sys

from harness import main

if __name__ == "__main__":
    sys.exit(main())
