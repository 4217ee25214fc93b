"""Backbones: functional builders returning dict-of-endpoints Keras models (see ``common``).

``BACKBONES`` is data: for each name, its builder, the input scaling its weights expect, and
whether ImageNet weights are published for it (keras.applications' files; for Xception-65 the
official DeepLab checkpoint, see ``tfseg.backbones.weights``).
"""

from __future__ import annotations

import dataclasses
import importlib

from tfseg.backbones.common import FeatureInfo, check_output_stride, feature_strides  # noqa: F401


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    builder: str  # "module:function"
    preprocessing: str  # ImagePreprocessing mode
    imagenet: bool  # ImageNet weights exist for it (keras.applications, or the official DeepLab checkpoint)
    reference: str


BACKBONES = {
    "vgg16": BackboneSpec("tfseg.backbones.vgg:vgg16", "caffe", True, "Simonyan & Zisserman 2015"),
    "resnet50": BackboneSpec("tfseg.backbones.resnet:resnet50", "caffe", True, "He et al. 2016"),
    "resnet101": BackboneSpec("tfseg.backbones.resnet:resnet101", "caffe", True, "He et al. 2016"),
    "xception41": BackboneSpec("tfseg.backbones.xception:xception41", "tf", False, "Chen et al. 2018"),
    "xception65": BackboneSpec("tfseg.backbones.xception:xception65", "tf", True, "Chen et al. 2018"),
    "xception71": BackboneSpec("tfseg.backbones.xception:xception71", "tf", False, "Chen et al. 2018"),
    "mobilenet_v2": BackboneSpec("tfseg.backbones.mobilenet_v2:mobilenet_v2", "tf", True, "Sandler et al. 2018"),
}


def list_backbones():
    return sorted(BACKBONES)


def backbone_spec(name):
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid backbones: {', '.join(list_backbones())}")
    return BACKBONES[name]


def weight_options(weights=None, weights_hash=None, allow_unverified_weights=False):
    """``build_backbone``'s weight keywords as a dict: what the model builders' ``backbone_weights``,
    ``backbone_weights_hash`` and ``allow_unverified_weights`` options become."""
    return {"weights": weights, "weights_hash": weights_hash, "allow_unverified_weights": allow_unverified_weights}


def build_backbone(name, input_shape=(None, None, 3), *, output_stride=32, weights=None, weights_hash=None,
                   allow_unverified_weights=False, **options):
    """Build backbone ``name`` and optionally load ImageNet weights.

    ``weights``: None (random), ``"imagenet"`` (the keras.applications file, or for Xception-65
    the official DeepLab checkpoint tarball, hash-verified) or a path to a Keras HDF5 weight file
    with keras.applications layer names (or to an official tarball). ``weights_hash`` (sha256
    or md5 hex) pins the file; it is required for MobileNetV2 and Xception-65, whose files have no
    published hash, unless ``allow_unverified_weights=True`` accepts it unverified (with a warning giving its
    sha256). The model builders pass them as ``backbone_weights_hash`` / ``allow_unverified_weights``.
    """
    if weights is None and (weights_hash is not None or allow_unverified_weights):
        raise ValueError(
            "weights_hash / allow_unverified_weights (backbone_weights_hash / allow_unverified_weights of the "
            "model builders) only apply when weights are loaded; pass weights='imagenet' or a file"
        )
    spec = backbone_spec(name)
    module, function = spec.builder.split(":")
    model = getattr(importlib.import_module(module), function)(input_shape, output_stride=output_stride, **options)
    if weights is not None:
        if weights == "imagenet" and not spec.imagenet:
            raise ValueError(
                f"no ImageNet weights are published for backbone {name!r}; "
                f"backbones with ImageNet weights: {[k for k, v in BACKBONES.items() if v.imagenet]}"
            )
        from tfseg.backbones.weights import load_imagenet_weights

        load_imagenet_weights(
            model, weights, backbone=name, file_hash=weights_hash, allow_unverified=allow_unverified_weights
        )
    return model
