"""The backbone contract: a functional Keras model whose output is a dict of feature endpoints.

Every backbone builder returns ``keras.Model`` with dict outputs and a ``feature_info`` tuple that
records, for each endpoint, its real stride after dilation and its channel count (the timm /
keras-hub convention). No code elsewhere derives a stride from an endpoint's name.
"""

from __future__ import annotations

import dataclasses

import keras

VALID_OUTPUT_STRIDES = (8, 16, 32)


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
    """One endpoint of a backbone: its key, its stride w.r.t. the input and its channel count."""

    name: str
    stride: int
    channels: int


def check_output_stride(output_stride, valid=VALID_OUTPUT_STRIDES, argument="output_stride"):
    if output_stride not in valid:
        raise ValueError(f"{argument}={output_stride!r} is not supported; valid values: {list(valid)}")
    return output_stride


class DilationSchedule:
    """Turns strides into atrous rates once ``output_stride`` is reached.

    Same rule as the official DeepLab code (slim ``stack_blocks_dense``): a layer that would
    exceed the output stride runs at stride 1 with the current rate, and every later layer's
    rate is multiplied by the stride it gave up.
    """

    def __init__(self, output_stride=None):
        self.output_stride = output_stride
        self.current_stride = 1
        self.rate = 1

    def step(self, stride):
        """Return ``(stride, rate)`` for a layer that asks for ``stride``."""
        if self.output_stride is not None and self.current_stride * stride > self.output_stride:
            rate = self.rate
            self.rate *= stride
            return 1, rate
        self.current_stride *= stride
        return stride, self.rate


@keras.saving.register_keras_serializable(package="tfseg")
class Backbone(keras.Model):
    """A functional dict-output model that keeps its ``feature_info`` through ``get_config``, so the
    strides survive saving to ``.keras`` and loading back (``import tfseg`` registers the class)."""

    def __init__(self, *args, feature_info=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.feature_info = tuple(
            info if isinstance(info, FeatureInfo) else FeatureInfo(**info) for info in feature_info
        )

    def get_config(self):
        return {**super().get_config(), "feature_info": [dataclasses.asdict(info) for info in self.feature_info]}


def backbone_model(inputs, endpoints, name):
    """Wrap ``{key: (tensor, stride)}`` into a dict-output :class:`Backbone` with ``feature_info``."""
    outputs = {key: tensor for key, (tensor, _) in endpoints.items()}
    feature_info = tuple(
        FeatureInfo(key, int(stride), int(tensor.shape[-1])) for key, (tensor, stride) in endpoints.items()
    )
    return Backbone(inputs, outputs, name=name, feature_info=feature_info)


def feature_strides(backbone):
    """``{endpoint: stride}`` of a backbone built by tfseg."""
    return {info.name: info.stride for info in backbone.feature_info}
