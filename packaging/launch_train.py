"""Entry script of the frozen training command: the same as `galaxy-inspector-train`."""

import sys

from training.cli import main

sys.exit(main())
