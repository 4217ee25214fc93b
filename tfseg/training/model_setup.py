"""The model and optimizer of a training run: fine-tuning freezes, batch-norm momentum, weight decay.

Weight decay follows the official DeepLab code (slim's ``l2_regularizer`` on convolution kernels,
depthwise kernels excluded) and is chosen by layer type; AdamW's decoupled decay (Loshchilov &
Hutter, ICLR 2019) has its own key and applies to the same kernels.
"""

from __future__ import annotations

import types

import keras
import tensorflow as tf

from tfseg.training.keras_internals import require
from tfseg.training.schedules import PolyDecay


def find_backbone(model):
    """The backbone nested in a tfseg model (the layer carrying ``feature_info``), or None."""
    for layer in model.layers:
        if getattr(layer, "feature_info", None):
            return layer
    return None


def batch_norm_layers(model):
    return [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def encoder_layers(model):
    """The layers ``freeze_backbone`` freezes: the tfseg backbone, or a U-Net's contracting path."""
    from tfseg.models.unet import contracting_path_layers

    backbone = find_backbone(model)
    layers = [backbone] if backbone is not None else contracting_path_layers(model)
    if not layers:
        raise ValueError(f"freeze_backbone: model {model.name!r} has no tfseg backbone or U-Net contracting path")
    return layers


def configure_for_fine_tuning(model, freeze_backbone=False, freeze_batch_norm=False):
    """Freeze the backbone's weights (:func:`encoder_layers`) and/or every batch norm (which then uses
    its moving statistics)."""
    if freeze_backbone:
        for layer in encoder_layers(model):
            layer.trainable = False
    if freeze_batch_norm:
        for layer in batch_norm_layers(model):
            layer.trainable = False


def global_batch_moments(inputs, axes):
    """Mean and variance of ``inputs`` over ``axes`` and over every replica's share of the global batch.

    Two passes, as ``tf.nn.moments`` computes them on one device: the all-reduced mean, then the
    all-reduced sum of squared deviations from it. (Keras's ``synchronized=True`` uses
    ``E[x^2] - E[x]^2``, whose cancellation made 2-replica runs drift from 1-device runs by 1e-4
    in a few steps.)
    """
    context = tf.distribute.get_replica_context()
    x = tf.cast(inputs, tf.float32)
    if context is None or context.num_replicas_in_sync == 1:
        return tf.nn.moments(x, axes)
    count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), tf.float32)
    count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    mean = tf.math.divide_no_nan(context.all_reduce(tf.distribute.ReduceOp.SUM, tf.reduce_sum(x, axes)), count)
    deviations = tf.reduce_sum(tf.math.squared_difference(x, tf.stop_gradient(mean)), axes)
    variance = tf.math.divide_no_nan(context.all_reduce(tf.distribute.ReduceOp.SUM, deviations), count)
    return mean, variance


def _synchronized_moments(layer, inputs, mask):
    if mask is not None:
        return type(layer)._moments(layer, inputs, mask)
    mean, variance = global_batch_moments(inputs, require(layer, "_reduction_axes"))
    return tf.cast(mean, inputs.dtype), tf.cast(variance, inputs.dtype)


def synchronize_batch_norm(model):
    """Batch norm moments computed over the global batch, across replicas (:func:`global_batch_moments`).

    Training-time only: the saved model holds plain batch norm layers.
    """
    for layer in batch_norm_layers(model):
        require(layer, "_moments")
        require(layer, "_reduction_axes")
        layer._moments = types.MethodType(_synchronized_moments, layer)


def short_run_momentum(total_steps, builder_momentum, window_fraction=0.05, floor=0.9):
    """A batch-norm momentum whose averaging window ``1 / (1 - m)`` is at most 5% of the run.

    The builders carry DeepLab's momenta (0.9997: a window of 3,333 steps, made for 30k-step
    runs); after a few hundred steps such moving statistics are still near their initial values
    and inference collapses. Long runs keep the builder's value.
    """
    window = max(total_steps * window_fraction, 1.0 / (1.0 - floor))
    return min(builder_momentum, 1.0 - 1.0 / window)


def set_batch_norm_momentum(model, momentum, total_steps):
    """Apply ``TrainConfig.batch_norm_momentum`` ("auto", None or a number) to every batch norm."""
    if momentum is None:
        return
    for layer in batch_norm_layers(model):
        layer.momentum = short_run_momentum(total_steps, layer.momentum) if momentum == "auto" else float(momentum)


# layer type -> the attribute of its decayed kernel. Keras 3's depthwise layers subclass none of these
# (DepthwiseConv1D/2D hold ``depthwise_kernel`` only); a separable convolution's pointwise kernel is decayed.
DECAYED_KERNELS = (
    ((keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Conv1DTranspose,
      keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose, keras.layers.Dense), "kernel"),
    ((keras.layers.SeparableConv1D, keras.layers.SeparableConv2D), "pointwise_kernel"),
)


def decayed_kernels(model):
    """The trainable variables weight decay applies to, chosen by layer type, not by name.

    Kernels of convolutions, transposed convolutions and dense layers, and the pointwise kernels of
    separable convolutions. Depthwise kernels, biases and batch-norm parameters are not decayed:
    the official DeepLab Xception and MobileNetV2 scopes use ``regularize_depthwise=False`` and slim
    regularises ``weights`` only.
    """
    kernels = []
    for layer in _all_layers(model):
        for types_, attribute in DECAYED_KERNELS:
            kernel = getattr(layer, attribute, None) if isinstance(layer, types_) else None
            if kernel is not None and kernel.trainable and layer.trainable:
                kernels.append(kernel)
    return kernels


def add_weight_decay(model, weight_decay):
    """L2 on :func:`decayed_kernels`, as slim's ``l2_regularizer(weight_decay)`` (0.5 * wd * |w|^2)."""
    regularizer = keras.regularizers.L2(weight_decay / 2.0)
    for kernel in decayed_kernels(model):
        kernel.regularizer = regularizer


def make_optimizer(config, total_steps, model):
    """SGD with momentum, or AdamW whose decoupled decay (``config.decoupled_weight_decay``) applies to
    :func:`decayed_kernels` only; under ``mixed_float16`` wrapped in a dynamic loss-scale optimizer
    that starts at ``config.initial_loss_scale``."""
    schedule = PolyDecay(
        config.learning_rate, total_steps, power=config.poly_power,
        end_learning_rate=config.end_learning_rate, warmup_steps=config.warmup_steps,
    )
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(schedule, momentum=config.momentum)
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=float(config.decoupled_weight_decay))
        if config.decoupled_weight_decay:
            decayed = {id(v) for v in decayed_kernels(model)}
            optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if id(v) not in decayed])
    if config.mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, initial_scale=config.initial_loss_scale)
    return optimizer


def build_training_model(config, num_classes, total_steps):
    """The model of ``config`` with its fine-tuning, weight-decay and batch-norm settings applied.

    ``config.pretrained`` (a zoo name) starts from that model's weights (or from the file
    ``config.pretrained_weights`` for the card's model); a class count other than the card's replaces
    the classifier and keeps every other weight.
    """
    from tfseg.registry import build_model

    if config.pretrained:
        from tfseg.catalogue import catalogue

        zoo = catalogue()

        weights = config.pretrained_weights or "pretrained"
        model = zoo.load(config.pretrained, weights=weights, num_classes=num_classes)
    else:
        model = build_model(config.model, num_classes, (None, None, 3), **config.model_options)
    configure_for_fine_tuning(model, config.freeze_backbone, config.freeze_batch_norm)
    set_batch_norm_momentum(model, config.batch_norm_momentum, total_steps)
    if config.weight_decay:
        add_weight_decay(model, config.weight_decay)
    return model
