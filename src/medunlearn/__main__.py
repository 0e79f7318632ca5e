"""``python -m medunlearn …`` (and ``accelerate launch -m medunlearn …``): the command line."""

import sys

from medunlearn.cli import main

sys.exit(main())
