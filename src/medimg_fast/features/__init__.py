"""IBSI radiomics features, exact from chunks, and a scikit-learn transformer.

``extract_features(image, mask, spacing=..., settings=...)`` returns a dict from IBSI
feature tag (``stat_mean``, ``ih_entropy``, ``cm_joint_max_3D_avg``, ``morph_volume``,
...) to value; ``extract_features_from_files(image_path, mask_path, settings=...)`` the same
for a pair of files (reading a NIfTI image only on its ROI's box where the settings allow); :class:`FeatureSettings` holds the image processing, the discretisation,
the families and the filter bank; :func:`filter_response` gives a filter's response map;
:class:`RadiomicsExtractor` wraps extraction for scikit-learn pipelines (imported on first
use: scikit-learn takes over a second to import, which extraction alone never needs).
"""

from ._extract import extract_features, extract_features_from_files
from ._filterbank import filter_response
from ._maps import feature_maps, write_feature_maps
from ._settings import FeatureSettings, FilterSpec

__all__ = ["FeatureSettings", "FilterSpec", "RadiomicsExtractor", "extract_features",
           "extract_features_from_files", "feature_maps", "filter_response", "write_feature_maps"]


def __getattr__(name):
    if name == "RadiomicsExtractor":
        from ._extractor import RadiomicsExtractor

        return RadiomicsExtractor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
