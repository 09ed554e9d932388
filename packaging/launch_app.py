"""Entry script of the frozen app (PyInstaller): the same as the `galaxy-inspector` command."""

import sys

from galaxy_inspector.cli import main

sys.exit(main())
