"""``python -m benchmarks.serve_load``: see :mod:`benchmarks.serve_load.cli`."""

import sys

from benchmarks.serve_load.cli import main

sys.exit(main())
