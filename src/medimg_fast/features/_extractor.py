"""A scikit-learn transformer from volumes (arrays or files) to radiomics features."""

from __future__ import annotations

import os

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from ._extract import extract_features, extract_features_from_files, feature_names
from ._settings import FeatureSettings

__all__ = ["RadiomicsExtractor"]


def _is_path(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def _open(path):
    from medimg_fast.io import open_volume

    return open_volume(path)


def _as_array_and_spacing(item):
    """``(array, spacing or None)`` of an array, a Volume or a path."""
    if _is_path(item):
        item = _open(item)
    if hasattr(item, "data") and hasattr(item, "spacing"):  # medimg_fast.io.Volume
        return item.data, tuple(item.spacing)
    if hasattr(item, "shape") and hasattr(item, "dtype"):
        return item, None
    raise TypeError(
        "each sample must be an array, a Volume, a path, or a tuple (image, mask); "
        f"got {type(item).__name__}"
    )


class RadiomicsExtractor(TransformerMixin, BaseEstimator):
    """Extract IBSI features from each of a list of volumes (a scikit-learn transformer).

    Parameters
    ----------
    settings : FeatureSettings or dict, optional
        Passed to :func:`extract_features`.
    spacing : float or sequence of float, optional
        Voxel size in mm used when a sample does not carry its own (arrays); volumes
        read from files use the spacing in their header.
    backend : str
        Passed to :func:`extract_features`.

    Notes
    -----
    ``X`` is a sequence whose samples are an image (the whole volume is the ROI), a
    tuple ``(image, mask)``, or paths / :class:`medimg_fast.io.Volume` objects in
    place of either array (read with :func:`medimg_fast.io.open_volume`).  A mask read
    from a file is the voxels ``> 0``.  ``transform`` returns a float64 array
    ``(n_samples, n_features)`` in the order of :meth:`get_feature_names_out`.

    Examples
    --------
    >>> import numpy as np
    >>> vols = [np.random.default_rng(i).normal(size=(6, 6, 6)) for i in range(2)]
    >>> X = RadiomicsExtractor(settings={"families": ["stat"]}).fit_transform(vols)
    >>> X.shape
    (2, 18)
    """

    def __init__(self, settings=None, spacing=None, backend="auto"):
        self.settings = settings
        self.spacing = spacing
        self.backend = backend

    def _settings(self) -> FeatureSettings:
        return FeatureSettings.coerce(self.settings)

    def fit(self, X, y=None):
        """Validate the settings and fix the output feature names (no data is read)."""
        names = feature_names(self._settings())
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.n_features_out_ = len(names)
        return self

    def get_feature_names_out(self, input_features=None):
        """The feature names, e.g. ``stat_mean``, ``cm_joint_max_3D_avg``."""
        if not hasattr(self, "feature_names_out_"):
            self.fit(None)
        return self.feature_names_out_.copy()

    def transform(self, X):
        """Features of each sample, shape ``(n_samples, n_features)``."""
        if not hasattr(self, "feature_names_out_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("RadiomicsExtractor is not fitted: call fit first")
        if _is_path(X) or hasattr(X, "shape"):
            raise TypeError(
                "`X` must be a sequence of samples (arrays, paths or (image, mask) tuples), "
                f"got a single {type(X).__name__}; wrap it in a list"
            )
        settings = self._settings()
        rows = []
        for i, sample in enumerate(X):
            if isinstance(sample, tuple) and len(sample) == 2 and all(map(_is_path, sample)):
                # two files: read as a pair (the image only on the ROI's bounding box
                # when the settings allow it), the values of the arrays' path
                feats = extract_features_from_files(sample[0], sample[1], settings=settings,
                                                    backend=self.backend)
                rows.append([feats[name] for name in self.feature_names_out_])
                continue
            if isinstance(sample, tuple):
                if len(sample) != 2:
                    raise ValueError(
                        f"sample {i}: a tuple must be (image, mask), got {len(sample)} items"
                    )
                image, spacing = _as_array_and_spacing(sample[0])
                mask, _ = _as_array_and_spacing(sample[1])
                if mask.dtype != bool:
                    mask = mask > 0
            else:
                image, spacing = _as_array_and_spacing(sample)
                mask = None
            if spacing is None:
                spacing = self.spacing
            feats = extract_features(image, mask, spacing=spacing, settings=settings,
                                     backend=self.backend)
            rows.append([feats[name] for name in self.feature_names_out_])
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), self.n_features_out_)
