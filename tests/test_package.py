"""The installed package: public API, lazy heavy imports, no CuPy on import, doctests."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys

import pytest

import medimg_fast


def test_import_needs_no_cupy_and_loads_no_heavy_subpackages():
    code = (
        "import sys, medimg_fast\n"
        "heavy = [m for m in ('cupy', 'medimg_fast.io', 'medimg_fast.features', 'sklearn',"
        " 'distributed', 'numba') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_resolve():
    for name in medimg_fast.__all__:
        assert getattr(medimg_fast, name) is not None, name
    assert set(medimg_fast.filters.__all__) <= set(dir(medimg_fast.filters))


@pytest.mark.parametrize("module", [
    "medimg_fast._shared.utils",
    "medimg_fast.backends",
    "medimg_fast.filters._gaussian",
    "medimg_fast.filters._rank",
    "medimg_fast.filters._edges",
    "medimg_fast.filters._correlate",
    "medimg_fast.filters._laws",
    "medimg_fast.filters._gabor",
    "medimg_fast.filters._wavelet",
    "medimg_fast.features._texture",
    "medimg_fast.features._glrlm",
    "medimg_fast.features._ngldm",
    "medimg_fast.features._glszm",
    "medimg_fast.features._ngtdm",
    "medimg_fast.features._extract",
    "medimg_fast.features._settings",
    "medimg_fast.preprocessing",
    "medimg_fast.io._rtstruct",
    "medimg_fast.io._geometry",
])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


def test_feature_extraction_imports_no_scikit_learn():
    code = ("import sys, numpy as np\n"
            "from medimg_fast.features import extract_features\n"
            "extract_features(np.arange(27.0).reshape(3, 3, 3), settings={'families': ['stat']})\n"
            "print('sklearn' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    from medimg_fast.features import RadiomicsExtractor

    assert RadiomicsExtractor.__name__ == "RadiomicsExtractor"
