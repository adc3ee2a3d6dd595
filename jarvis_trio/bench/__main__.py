"""``python -m jarvis_trio.bench``: see :mod:`jarvis_trio.bench.cli`."""

import sys

from .cli import main

sys.exit(main())
