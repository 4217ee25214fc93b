"""Model registry: public name -> builder function (``module:function``), resolved lazily."""

from __future__ import annotations

import importlib
import inspect
import numbers

MODELS = {
    "fcn32s": "tfseg.models.fcn:fcn32s",
    "fcn16s": "tfseg.models.fcn:fcn16s",
    "fcn8s": "tfseg.models.fcn:fcn8s",
    "unet": "tfseg.models.unet:unet",
    "deeplab_v1": "tfseg.models.deeplab:deeplab_v1",
    "deeplab_v2": "tfseg.models.deeplab:deeplab_v2",
    "deeplab_v3": "tfseg.models.deeplab:deeplab_v3",
    "deeplab_v3plus": "tfseg.models.deeplab:deeplab_v3plus",
    "segnet": "tfseg.models.segnet:segnet",
    "segnet_basic": "tfseg.models.segnet:segnet_basic",
    "deconvnet": "tfseg.models.deconvnet:deconvnet",
}


def list_models():
    """Names accepted by :func:`build_model`."""
    return sorted(MODELS)


def get_builder(name):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    module, function = MODELS[name].split(":")
    return getattr(importlib.import_module(module), function)


def model_options(name):
    """Keyword options a model accepts, with their defaults."""
    signature = inspect.signature(get_builder(name))
    return {
        p.name: p.default
        for p in signature.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def build_model(name, num_classes, input_shape=(None, None, 3), **options):
    """Build the segmentation model ``name``: a functional ``keras.Model`` from images to logits.

    ``num_classes``: number of output channels; ``input_shape``: (H, W, C), None for any size.
    Options are model-specific (``backbone=``, ``output_stride=``, ``mode=``, ``aspp=``...);
    an unknown one raises ``TypeError`` listing the valid options.
    """
    builder = get_builder(name)
    valid = model_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise TypeError(
            f"{name}: unknown option(s) {unknown}; valid options: "
            + ", ".join(f"{k}={v!r}" for k, v in valid.items())
        )
    if not isinstance(num_classes, numbers.Integral) or isinstance(num_classes, bool) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    input_shape = tuple(None if side is None else _positive_int(side, "input_shape", input_shape) for side in input_shape)
    if len(input_shape) != 3 or input_shape[2] is None:
        raise ValueError(f"input_shape must be (height, width, channels) with known channels, got {input_shape!r}")
    return builder(int(num_classes), input_shape, **options)


def _positive_int(value, argument, whole):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{argument}={whole!r}: every size must be a positive int or None, got {value!r}")
    return int(value)


# The configurations listed by `tfseg models` and in the README: (name, options) as data.
MODEL_VARIANTS = (
    ("fcn32s", {}),
    ("fcn16s", {}),
    ("fcn8s", {}),
    ("unet", {"mode": "paper"}),
    ("unet", {"mode": "practical"}),
    ("deeplab_v1", {}),
    ("deeplab_v2", {"backbone": "vgg16", "aspp": "L"}),
    ("deeplab_v2", {"backbone": "resnet101", "aspp": "L"}),
    ("deeplab_v3", {"backbone": "resnet50"}),
    ("deeplab_v3", {"backbone": "resnet101"}),
    ("deeplab_v3plus", {"backbone": "xception41"}),
    ("deeplab_v3plus", {"backbone": "xception65"}),
    ("deeplab_v3plus", {"backbone": "xception71"}),
    ("deeplab_v3plus", {"backbone": "resnet101"}),
    ("deeplab_v3plus", {"backbone": "mobilenet_v2"}),
    ("segnet", {}),
    ("segnet_basic", {}),
    ("deconvnet", {}),
)


def encoder_output_stride(model):
    """Largest real stride among the endpoints of the backbone nested in ``model`` (None if none)."""
    strides = [info.stride for layer in model.layers for info in getattr(layer, "feature_info", ())]
    return max(strides) if strides else None


def describe_variants(num_classes=21, variants=MODEL_VARIANTS):
    """Build each variant and yield ``(name, options, parameters, output_stride)``."""
    import keras

    for name, options in variants:
        model = build_model(name, num_classes, **options)
        stride = encoder_output_stride(model)
        if stride is None and name == "unet":
            stride = 2 ** model_options("unet")["depth"]
        yield name, options, model.count_params(), stride
        del model
        keras.backend.clear_session()
