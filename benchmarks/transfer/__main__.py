"""``python -m benchmarks.transfer``: see :mod:`benchmarks.transfer.cli`."""

import sys

from benchmarks.transfer.cli import main

sys.exit(main())
