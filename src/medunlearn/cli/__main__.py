"""``python -m medunlearn.cli …``: the command line (the benchmarks start it this way)."""

import sys

from medunlearn.cli import main

sys.exit(main())
