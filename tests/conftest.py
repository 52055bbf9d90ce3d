"""Shared fixtures: the optional ``../shared/data`` folder and small generated media."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from forensics.config import shared_data_dir


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The development data folder; tests that need it skip cleanly when it is absent (e.g. third-party CI)."""
    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data is not present")
    return d


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
