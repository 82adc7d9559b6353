"""Fixtures of the feature tests."""

from __future__ import annotations

import numpy as np
import pytest
from _ibsi_reference import digital_phantom


@pytest.fixture(scope="module")
def phantom_levels():
    """The IBSI-1 digital phantom's grey levels (bin width 1: levels 1..6, 0 outside)."""
    image, mask, _ = digital_phantom()
    return np.where(mask, image, 0).astype(np.int32)
