"""Official DeepLab checkpoints written for the tests: official names and shapes, random values.

Names and shapes are enumerated here from the official architecture definitions in
github.com/tensorflow/models (``research/deeplab/core/xception.py`` ``xception_65``;
``research/deeplab/model.py`` ASPP, decoder and logits; ``research/slim/nets/mobilenet/mobilenet_v2.py``
``V2_DEF`` and ``conv_blocks.py`` ``expanded_conv``), not from ``tfseg.backbones.official``, so that the
converter is checked against an independent account. ``expected_tfseg_weight`` is this file's own
idea of which tfseg weight each official variable belongs to. The files are TF1-style name-based
checkpoints (raw ``SaveV2``), which is what ``tf.train.load_checkpoint`` reads.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

# (scope, depth_list, units, skip_connection_type) of xception_65_factory.
XCEPTION_65_BLOCKS = (
    ("entry_flow/block1", (128, 128, 128), 1, "conv"),
    ("entry_flow/block2", (256, 256, 256), 1, "conv"),
    ("entry_flow/block3", (728, 728, 728), 1, "conv"),
    ("middle_flow/block1", (728, 728, 728), 16, "sum"),
    ("exit_flow/block1", (728, 1024, 1024), 1, "conv"),
    ("exit_flow/block2", (1536, 1536, 2048), 1, "none"),
)
# V2_DEF's expanded_conv layers as (expansion, num_outputs, repeats); layer_1 is Conv (32), and
# DeepLab stops at layer_18, before Conv_1.
MOBILENET_V2_LAYERS = ((1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1))
ASPP_DEPTH = 256
DECODER_PROJECTION = 48
IMAGENET_CLASSES = 1001


def _batch_norm(shapes, scope, channels):
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        shapes[f"{scope}/BatchNorm/{name}"] = (channels,)


def _conv_bn(shapes, scope, kernel, channels_in, channels_out):
    shapes[f"{scope}/weights"] = (kernel, kernel, channels_in, channels_out)
    _batch_norm(shapes, scope, channels_out)


def _depthwise_bn(shapes, scope, channels):
    shapes[f"{scope}/depthwise_weights"] = (3, 3, channels, 1)
    _batch_norm(shapes, scope, channels)


def xception_65_shapes():
    shapes = {}
    _conv_bn(shapes, "xception_65/entry_flow/conv1_1", 3, 3, 32)
    _conv_bn(shapes, "xception_65/entry_flow/conv1_2", 3, 32, 64)
    channels = 64
    for block, depths, units, skip in XCEPTION_65_BLOCKS:
        for unit in range(1, units + 1):
            module = f"xception_65/{block}/unit_{unit}/xception_module"
            unit_input = channels
            for index, depth in enumerate(depths, start=1):
                _depthwise_bn(shapes, f"{module}/separable_conv{index}_depthwise", channels)
                _conv_bn(shapes, f"{module}/separable_conv{index}_pointwise", 1, channels, depth)
                channels = depth
            if skip == "conv":
                _conv_bn(shapes, f"{module}/shortcut", 1, unit_input, depths[-1])
    return shapes


def mobilenet_v2_shapes():
    shapes = {}
    _conv_bn(shapes, "MobilenetV2/Conv", 3, 3, 32)
    channels, index = 32, 0
    for expansion, outputs, repeats in MOBILENET_V2_LAYERS:
        for _ in range(repeats):
            scope = "MobilenetV2/expanded_conv" + (f"_{index}" if index else "")
            inner = channels * expansion
            if inner > channels:  # expanded_conv adds 'expand' only when it widens the input
                _conv_bn(shapes, f"{scope}/expand", 1, channels, inner)
            _depthwise_bn(shapes, f"{scope}/depthwise", inner)
            _conv_bn(shapes, f"{scope}/project", 1, inner, outputs)
            channels, index = outputs, index + 1
    return shapes


def head_shapes(features, num_classes, atrous_branches, low_level_channels=None):
    """model.py: image pooling, aspp0, separable aspp1..n, concat_projection, decoder, logits."""
    shapes = {}
    _conv_bn(shapes, "image_pooling", 1, features, ASPP_DEPTH)
    _conv_bn(shapes, "aspp0", 1, features, ASPP_DEPTH)
    for index in range(1, atrous_branches + 1):
        _depthwise_bn(shapes, f"aspp{index}_depthwise", features)
        _conv_bn(shapes, f"aspp{index}_pointwise", 1, features, ASPP_DEPTH)
    _conv_bn(shapes, "concat_projection", 1, ASPP_DEPTH * (2 + atrous_branches), ASPP_DEPTH)
    if low_level_channels is not None:
        _conv_bn(shapes, "decoder/feature_projection0", 1, low_level_channels, DECODER_PROJECTION)
        channels = ASPP_DEPTH + DECODER_PROJECTION
        for index in (0, 1):
            _depthwise_bn(shapes, f"decoder/decoder_conv{index}_depthwise", channels)
            _conv_bn(shapes, f"decoder/decoder_conv{index}_pointwise", 1, channels, ASPP_DEPTH)
            channels = ASPP_DEPTH
    shapes["logits/semantic/weights"] = (1, 1, ASPP_DEPTH, num_classes)
    shapes["logits/semantic/biases"] = (num_classes,)
    return shapes


def deeplab_xception65_shapes(num_classes=21):
    """The official VOC Xception-65 model: ASPP rates 6/12/18 (separable), decoder on 256-channel features."""
    return {**xception_65_shapes(), **head_shapes(2048, num_classes, 3, low_level_channels=256)}


def deeplab_mobilenet_v2_shapes(num_classes=21):
    """The official VOC/Cityscapes MobileNetV2 model: image pooling + aspp0 only, no decoder."""
    return {**mobilenet_v2_shapes(), **head_shapes(320, num_classes, 0)}


def imagenet_xception65_shapes():
    """The ImageNet Xception-65 checkpoint: the backbone and its 1001-class classifier."""
    return {**xception_65_shapes(), "xception_65/logits/weights": (1, 1, 2048, IMAGENET_CLASSES),
            "xception_65/logits/biases": (IMAGENET_CLASSES,)}


def random_tensors(shapes, seed=0):
    """Random float32 values; batch-norm variances positive, kernels scaled by their fan-in."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in shapes.items():
        kind = name.rsplit("/", 1)[-1]
        if kind == "moving_variance":
            value = rng.uniform(0.5, 2.0, shape)
        elif kind == "gamma":
            value = rng.uniform(0.5, 1.5, shape)
        elif kind in ("beta", "moving_mean", "biases"):
            value = rng.normal(0.0, 0.1, shape)
        else:
            fan_in = np.prod(shape[:2]) if kind == "depthwise_weights" else np.prod(shape[:-1])
            value = rng.standard_normal(shape, dtype=np.float32) / np.sqrt(fan_in)
        tensors[name] = np.asarray(value, np.float32)
    return tensors


def with_decoys(tensors):
    """Entries a real training checkpoint also holds, which the converter must ignore."""
    first, last = next(iter(tensors)), list(tensors)[-1]
    return {
        **tensors,
        f"{first}/Momentum": np.zeros_like(tensors[first]),
        f"{last}/Momentum": np.zeros_like(tensors[last]),
        f"{first}/ExponentialMovingAverage": tensors[first] + 1,
        "global_step": np.array(30000, np.int64),
    }


def write_checkpoint(prefix, tensors):
    """A name-based (TF1) checkpoint ``prefix.index`` + ``prefix.data-00000-of-00001``; return ``prefix``."""
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    names = list(tensors)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[name]) for name in names])
    stored = tf.train.load_checkpoint(str(prefix)).get_variable_to_shape_map()
    assert {name: tuple(shape) for name, shape in stored.items()} == {n: tensors[n].shape for n in names}
    return prefix


def write_tarball(path, tensors, folder="deeplabv3_pascal_train_aug", checkpoint="model.ckpt"):
    """An official-style tarball: ``folder/checkpoint.{index,data-...}`` and a frozen graph placeholder."""
    with tempfile.TemporaryDirectory() as staging:
        write_checkpoint(Path(staging) / folder / checkpoint, tensors)
        (Path(staging) / folder / "frozen_inference_graph.pb").write_bytes(b"not a graph")
        with tarfile.open(path, "w:gz", compresslevel=1) as archive:
            archive.add(Path(staging) / folder, arcname=folder)
    return Path(path)


def expected_tfseg_weight(official):
    """``(tfseg layer name, keras variable name)`` this file expects for an official variable name."""
    scope, variable = official.rsplit("/", 1)
    keras_name = {"weights": "kernel", "depthwise_weights": "kernel", "biases": "bias"}.get(variable, variable)
    batch_norm = scope.endswith("/BatchNorm")
    scope = scope.removesuffix("/BatchNorm")
    if scope.startswith("xception_65/"):
        layer = (scope.removeprefix("xception_65/").replace("/unit_", "_unit")
                 .replace("/xception_module/separable_conv", "_sepconv").replace("/xception_module/", "_")
                 .replace("/", "_"))
        return layer + ("_bn" if batch_norm else ""), keras_name
    if scope.startswith("MobilenetV2/"):
        part = scope.removeprefix("MobilenetV2/")
        if part == "Conv":
            return ("bn_Conv1" if batch_norm else "Conv1"), keras_name
        block, op = part.split("/")
        index = block.removeprefix("expanded_conv").lstrip("_")
        layer = f"block_{index}_{op}" if index else f"expanded_conv_{op}"
        return layer + ("_BN" if batch_norm else ""), keras_name
    layer = "logits" if scope == "logits/semantic" else scope.removeprefix("decoder/")
    return layer + ("_bn" if batch_norm else ""), keras_name


def all_layers(model):
    """Every layer of ``model`` by name, nested models (backbones) flattened."""
    layers = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            layers.update(all_layers(layer))
        else:
            layers[layer.name] = layer
    return layers


def set_expected_weights(model, tensors):
    """Assign ``tensors`` (official names) to ``model`` by ``expected_tfseg_weight``; every weight exactly once."""
    layers = all_layers(model)
    assigned = set()
    for name, value in tensors.items():
        layer_name, variable_name = expected_tfseg_weight(name)
        (variable,) = [v for v in layers[layer_name].weights if v.name == variable_name]
        assert id(variable) not in assigned, name
        variable.assign(value)
        assigned.add(id(variable))
    assert len(assigned) == len(model.weights)
