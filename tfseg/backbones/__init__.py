"""Backbones: functional builders returning dict-of-endpoints Keras models (see ``common``)."""

from tfseg.backbones.common import FeatureInfo, feature_strides  # noqa: F401
