"""``python -m qrerank`` is the ``qrerank`` command."""

import sys

from qrerank.cli import main

sys.exit(main())
