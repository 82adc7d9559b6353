"""IBSI radiomics features, exact from chunks, and a scikit-learn transformer.

``extract_features(image, mask, spacing=..., settings=...)`` returns a dict from IBSI
feature tag (``stat_mean``, ``ih_entropy``, ``cm_joint_max_3D_avg``, ``morph_volume``,
...) to value; :class:`FeatureSettings` holds the discretisation, the families and the
filter bank; :class:`RadiomicsExtractor` wraps it for scikit-learn pipelines.
"""

from ._extract import extract_features
from ._extractor import RadiomicsExtractor
from ._filterbank import filter_response
from ._settings import FeatureSettings, FilterSpec

__all__ = ["FeatureSettings", "FilterSpec", "RadiomicsExtractor", "extract_features",
           "filter_response"]
