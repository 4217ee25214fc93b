"""Aligned Xception-41/65/71, the DeepLab v3+ backbone (Chen et al. 2018, arXiv 1802.02611).

Follows the official ``tensorflow/models`` ``research/deeplab/core/xception.py`` (MSRA's deeper,
aligned Xception with every max pool replaced by a stride-2 separable conv):

- root: 3x3/32 stride 2 (fixed padding + VALID) + BN + ReLU, 3x3/64 + BN + ReLU;
- every unit is three separable convs (depthwise 3x3 -> BN -> pointwise 1x1 -> BN) with a
  pre-activation ReLU before each one; a strided unit strides on its third separable conv
  (fixed padding + VALID) and has a 1x1 conv + BN shortcut of the same stride;
- the last exit-flow unit [1536, 1536, 2048] has no shortcut and its ReLUs inside each separable
  conv, after the depthwise BN and after the pointwise BN (``activation_fn_in_separable_conv``);
- BN epsilon 1e-3, momentum 0.9997 (slim decay); convolutions have no bias.

``output_stride`` 8/16/32 replaces the strides beyond it by atrous rates on the depthwise convs
(slim ``stack_blocks_dense`` rule, see ``DilationSchedule``); every separable conv of a unit runs
at the unit's rate. ``multi_grid`` (three rates) multiplies the rates of the last exit-flow
unit's separable convs, as the official ``unit_rate_list``.

Layer names mirror the official checkpoint scopes with ``/`` flattened to ``_``, e.g.
``xception_65/entry_flow/block1/unit_1/xception_module/separable_conv1_depthwise/BatchNorm``
-> ``entry_flow_block1_unit1_sepconv1_depthwise_bn``; ``.../shortcut`` -> ``..._shortcut``;
``entry_flow/conv1_1`` -> ``entry_flow_conv1_1`` (+ ``_bn``).

Endpoints: ``P1`` root output (64 ch), ``P2`` the last stride-4 feature (the second separable
conv's BN output of the unit that strides 4 -> 8; 256 ch), ``P3`` the last block output at nominal
stride 8, ``P4`` the middle-flow output (728 ch), ``P5`` the exit-flow output (2048 ch). The same
stride-4 feature is also keyed by its layer name (``entry_flow_block2_unit1_sepconv2_pointwise_bn``,
``entry_flow_block3_...`` for Xception-71): the official feature extractor's stride-4 endpoint
``entry_flow/block{2,3}/unit_1/xception_module/separable_conv2_pointwise``.
"""

from __future__ import annotations

import dataclasses

import keras

from tfseg.backbones.common import DilationSchedule, backbone_model, check_output_stride
from tfseg.layers.conv import conv2d_same, fixed_padding

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.9997


@dataclasses.dataclass(frozen=True)
class XceptionBlock:
    """``units`` identical Xception units; ``stride`` applies to every unit (1 or 2).

    ``shortcut`` is the official ``skip_connection_type``: ``"conv"`` (1x1 conv + BN), ``"sum"``
    (identity) or ``"none"``.
    """

    name: str
    depths: tuple[int, int, int]
    units: int
    stride: int
    shortcut: str
    activation_in_separable_conv: bool = False


@dataclasses.dataclass(frozen=True)
class XceptionSpec:
    """Blocks in order, and which named feature each endpoint is (a block name or a separable conv)."""

    blocks: tuple[XceptionBlock, ...]
    endpoints: dict


def _entry(index, depth, stride):
    return XceptionBlock(f"entry_flow_block{index}", (depth,) * 3, 1, stride, "conv")


def _middle_and_exit(middle_units):
    return (
        XceptionBlock("middle_flow_block1", (728, 728, 728), middle_units, 1, "sum"),
        XceptionBlock("exit_flow_block1", (728, 1024, 1024), 1, 2, "conv"),
        XceptionBlock("exit_flow_block2", (1536, 1536, 2048), 1, 1, "none", activation_in_separable_conv=True),
    )


_ENTRY_FLOW_3 = (_entry(1, 128, 2), _entry(2, 256, 2), _entry(3, 728, 2))
_ENTRY_FLOW_5 = (_entry(1, 128, 2), _entry(2, 256, 1), _entry(3, 256, 2), _entry(4, 728, 1), _entry(5, 728, 2))
_ENDPOINTS_3 = {
    "P1": "entry_flow_conv1_2",
    "P2": "entry_flow_block2_unit1_sepconv2",
    "P3": "entry_flow_block2",
    "P4": "middle_flow_block1",
    "P5": "exit_flow_block2",
    # The official stride-4 feature (.../separable_conv2_pointwise), keyed by its layer name.
    "entry_flow_block2_unit1_sepconv2_pointwise_bn": "entry_flow_block2_unit1_sepconv2",
}
_ENDPOINTS_5 = {
    **{k: v for k, v in _ENDPOINTS_3.items() if k.startswith("P")},
    "P2": "entry_flow_block3_unit1_sepconv2",
    "P3": "entry_flow_block4",
    "entry_flow_block3_unit1_sepconv2_pointwise_bn": "entry_flow_block3_unit1_sepconv2",
}

XCEPTION_SPECS = {
    "xception41": XceptionSpec(_ENTRY_FLOW_3 + _middle_and_exit(8), _ENDPOINTS_3),
    "xception65": XceptionSpec(_ENTRY_FLOW_3 + _middle_and_exit(16), _ENDPOINTS_3),
    "xception71": XceptionSpec(_ENTRY_FLOW_5 + _middle_and_exit(16), _ENDPOINTS_5),
}


def batch_norm(name):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def separable_conv_bn(x, filters, name, stride=1, rate=1, activation_inside=False):
    """Official ``separable_conv2d_same`` split into depthwise + BN and pointwise + BN.

    Pre-activation (a ReLU before the depthwise conv) unless ``activation_inside``, which puts a
    ReLU after each BN instead. Strided: fixed padding then VALID; stride 1: 'same' with dilation.
    """
    if not activation_inside:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    if stride == 1:
        x = keras.layers.DepthwiseConv2D(
            3, padding="same", dilation_rate=rate, use_bias=False, name=f"{name}_depthwise"
        )(x)
    else:
        x = fixed_padding(x, 3, rate, name=f"{name}_pad")
        x = keras.layers.DepthwiseConv2D(
            3, strides=stride, padding="valid", dilation_rate=rate, use_bias=False, name=f"{name}_depthwise"
        )(x)
    x = batch_norm(f"{name}_depthwise_bn")(x)
    if activation_inside:
        x = keras.layers.ReLU(name=f"{name}_depthwise_relu")(x)
    x = keras.layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pointwise")(x)
    x = batch_norm(f"{name}_pointwise_bn")(x)
    if activation_inside:
        x = keras.layers.ReLU(name=f"{name}_pointwise_relu")(x)
    return x


def xception_unit(x, block, name, stride, rate, unit_rates=(1, 1, 1)):
    """One official ``xception_module``; returns ``(output, [separable conv outputs])``."""
    inputs = x
    separable_outputs = []
    for index, depth in enumerate(block.depths):
        x = separable_conv_bn(
            x,
            depth,
            f"{name}_sepconv{index + 1}",
            stride=stride if index == 2 else 1,
            rate=rate * unit_rates[index],
            activation_inside=block.activation_in_separable_conv,
        )
        separable_outputs.append(x)
    if block.shortcut == "conv":
        shortcut = keras.layers.Conv2D(block.depths[-1], 1, strides=stride, use_bias=False, name=f"{name}_shortcut")(
            inputs
        )
        shortcut = batch_norm(f"{name}_shortcut_bn")(shortcut)
        x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    elif block.shortcut == "sum":
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    elif block.shortcut != "none":
        raise ValueError(f"shortcut={block.shortcut!r}; valid: 'conv', 'sum', 'none'")
    return x, separable_outputs


def xception(variant, input_shape=(None, None, 3), *, output_stride=16, multi_grid=None, name=None):
    """Build an aligned Xception from ``XCEPTION_SPECS[variant]``; endpoints ``P1`` .. ``P5``."""
    if variant not in XCEPTION_SPECS:
        raise ValueError(f"Xception variant {variant!r}; valid: {sorted(XCEPTION_SPECS)}")
    check_output_stride(output_stride)
    unit_rates = (1, 1, 1) if multi_grid is None else tuple(int(r) for r in multi_grid)
    if len(unit_rates) != 3:
        raise ValueError(f"multi_grid={tuple(multi_grid)} needs 3 rates, one per separable conv of the last unit")
    spec = XCEPTION_SPECS[variant]
    name = name or variant
    inputs = keras.Input(input_shape, name=f"{name}_input")
    schedule = DilationSchedule(output_stride)
    features = {}

    stride, rate = schedule.step(2)
    x = conv2d_same(inputs, 32, 3, stride=stride, rate=rate, name="entry_flow_conv1_1")
    x = batch_norm("entry_flow_conv1_1_bn")(x)
    x = keras.layers.ReLU(name="entry_flow_conv1_1_relu")(x)
    x = conv2d_same(x, 64, 3, rate=schedule.rate, name="entry_flow_conv1_2")
    x = batch_norm("entry_flow_conv1_2_bn")(x)
    x = keras.layers.ReLU(name="entry_flow_conv1_2_relu")(x)
    features["entry_flow_conv1_2"] = (x, schedule.current_stride)

    last_block = spec.blocks[-1].name
    for block in spec.blocks:
        for unit in range(1, block.units + 1):
            unit_name = f"{block.name}_unit{unit}"
            stride_in = schedule.current_stride
            stride, rate = schedule.step(block.stride)
            x, separable_outputs = xception_unit(
                x, block, unit_name, stride, rate, unit_rates if block.name == last_block else (1, 1, 1)
            )
            for index, output in enumerate(separable_outputs, start=1):
                # Only the third separable conv strides: the first two run at the unit's input stride.
                features[f"{unit_name}_sepconv{index}"] = (output, stride_in if index < 3 else schedule.current_stride)
        features[block.name] = (x, schedule.current_stride)

    return backbone_model(inputs, {key: features[feature] for key, feature in spec.endpoints.items()}, name)


def xception41(input_shape=(None, None, 3), *, output_stride=16, multi_grid=None, name="xception41"):
    """Aligned Xception-41: 8 middle-flow units."""
    return xception("xception41", input_shape, output_stride=output_stride, multi_grid=multi_grid, name=name)


def xception65(input_shape=(None, None, 3), *, output_stride=16, multi_grid=None, name="xception65"):
    """Aligned Xception-65: 16 middle-flow units (the DeepLab v3+ default backbone)."""
    return xception("xception65", input_shape, output_stride=output_stride, multi_grid=multi_grid, name=name)


def xception71(input_shape=(None, None, 3), *, output_stride=16, multi_grid=None, name="xception71"):
    """Aligned Xception-71: entry flow of 5 blocks (strides 2, 1, 2, 1, 2), 16 middle-flow units."""
    return xception("xception71", input_shape, output_stride=output_stride, multi_grid=multi_grid, name=name)
