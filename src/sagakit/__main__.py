"""Run the command line: python -m sagakit."""

import sys

from sagakit.cli import main

sys.exit(main())
