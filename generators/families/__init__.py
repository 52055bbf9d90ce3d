"""Every built-in generator family; importing this package registers them all (see ``generators.registry``).

Shared, append-only: each family owner adds one import line.
"""

# ruff: noqa: I001  (one import line per family, appended by each owner; kept unmerged on purpose)
from generators import diffusion  # noqa: F401
from generators.families import cgan  # noqa: F401
from generators.families import cyclegan  # noqa: F401
from generators.families import dcgan  # noqa: F401
from generators.families import inpaint  # noqa: F401
from generators.families import pixelshuffle  # noqa: F401
from generators.families import resgan  # noqa: F401
from generators.families import srgan  # noqa: F401
from generators.families import stylegan2  # noqa: F401
