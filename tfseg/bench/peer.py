"""keras-hub's DeepLabV3Plus (ResNet-50 encoder, random weights) beside tfseg's DeepLab v3+ ResNet-50.

keras-hub is a benchmark peer only: installed by hand (see the README), imported here and nowhere
else in tfseg.
"""

from __future__ import annotations

PEER_SIZE = (512, 512)
PEER_CLASSES = 21


def keras_hub_deeplab_v3plus(num_classes=PEER_CLASSES, input_size=PEER_SIZE):
    """keras-hub's DeepLabV3Plus on a ResNet-50 (v1) encoder: the configuration of its VOC preset."""
    try:
        import keras_hub
    except ImportError as error:
        raise ImportError(
            "tfseg bench --peer needs keras-hub, installed for the benchmark only: "
            "python3 -m pip install --no-deps keras-hub tokenizers (see the README)"
        ) from error
    import keras

    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512], stackwise_num_blocks=[3, 4, 6, 3],
        stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block", use_pre_activation=False,
        image_shape=(*input_size, 3),
    )
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=encoder, low_level_feature_key="P2", spatial_pyramid_pooling_key="P5",
        upsampling_size=8, dilation_rates=[6, 12, 18], image_shape=(*input_size, 3),
    )
    segmenter = keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=num_classes)
    # The segmenter's own call on raw pixels (its preprocessor is a separate object): wrap as a model.
    inputs = keras.Input((*input_size, 3))
    return keras.Model(inputs, segmenter(inputs), name="keras_hub_deeplab_v3plus_resnet50")


def tfseg_deeplab_v3plus(num_classes=PEER_CLASSES, input_size=PEER_SIZE):
    import tfseg

    return tfseg.build_model("deeplab_v3plus", num_classes, (*input_size, 3), backbone="resnet50")


def model_callable(model, input_size, xla=False):
    """``run()`` -> logits of ``model`` on one float image, as a TensorFlow graph (XLA-compiled if ``xla``)."""
    import numpy as np
    import tensorflow as tf

    from tfseg.inference.native_log import silenced_native_stderr

    function = tf.function(lambda x: model(x, training=False), jit_compile=xla)
    concrete = function.get_concrete_function(tf.TensorSpec([1, *input_size, 3], tf.float32))
    image = tf.constant(np.random.default_rng(0).uniform(0, 255, (1, *input_size, 3)).astype(np.float32))
    with silenced_native_stderr():  # XLA logs its compilation on the first call
        concrete(image).numpy()
    return lambda: concrete(image).numpy()


def peer_seconds(models, input_size=PEER_SIZE, repeats=10, xla=False):
    """Median seconds of each model, timed in turn so that both share the machine's load alike."""
    from tfseg.bench.timing import interleaved_median_seconds

    return interleaved_median_seconds([model_callable(m, input_size, xla) for m in models], repeats=repeats)
