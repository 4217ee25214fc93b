"""Max pooling that remembers where each maximum came from, and max unpooling that puts values back there.

SegNet (Badrinarayanan et al., TPAMI 2017) and DeconvNet (Noh et al., ICCV 2015) upsample with
the encoder's pooling "switches". The semantics are those of ``tf.nn.max_pool_with_argmax``
followed by a scatter of the decoder's values to the argmax positions (zeros elsewhere): within a
window the first maximum in row-major order wins, as in TF's CPU kernel and Caffe's pooling.

Neither ``MaxPoolWithArgmax`` nor a scatter to its int64 indices is a TFLite builtin, so the
switches are carried as a 0/1 mask of the pooling input's shape, computed from builtin ops only:
the input is cut into its windows (``SpaceToDepth``), ``ArgMax`` over each window picks the first
maximum, and ``DepthToSpace`` lays the one-hot choice back out. Windows do not overlap (stride =
pool size), as in both papers; with overlapping windows one position could be several windows'
maximum and a mask could not say which values to sum there.

``padding="same"`` is TF's SAME (output ``ceil(size / pool_size)``, padding split as TF does); for
2x2 windows it equals Caffe's ceil mode, which SegNet uses (45x60 -> 23x30 -> 45x60).
``padding="valid"`` drops the last incomplete row/column of windows; unpooling leaves zeros there.
"""

from __future__ import annotations

import keras
import tensorflow as tf

PADDINGS = ("same", "valid")


def _check_options(pool_size, padding):
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
        raise ValueError(
            f"pool_size must be a positive int (square windows, stride = pool_size), got {pool_size!r}"
        )
    if padding not in PADDINGS:
        raise ValueError(f"padding={padding!r}; valid: {list(PADDINGS)}")


def pooled_size(size, pool_size, padding):
    """Side of the pooled map for an input side ``size`` (None stays None)."""
    if size is None:
        return None
    return -(-size // pool_size) if padding == "same" else size // pool_size


def _window_offsets(size, pool_size, padding):
    """``(before, after)`` rows to add (negative: remove) so that ``size`` tiles into whole windows.

    SAME pads with TF's split (the smaller half before); VALID removes the incomplete last window.
    """
    if padding == "same":
        total = (-size) % pool_size
        return total // 2, total - total // 2
    return 0, -(size % pool_size)


def max_pool_with_mask(x, pool_size=2, padding="same"):
    """``(pooled, mask)``: max pooling over non-overlapping ``pool_size`` windows and its switches.

    ``mask`` has ``x``'s shape and dtype: 1 at the first maximum (row-major) of every window, 0
    elsewhere. ``pooled`` equals ``tf.nn.max_pool_with_argmax(x, pool_size, pool_size, padding)[0]``
    and is computed as the masked sum of each window, so its gradient goes to the first maximum
    only, as ``MaxPoolGradWithArgmax`` does (``reduce_max`` would split it among ties).
    """
    _check_options(pool_size, padding)
    k = pool_size
    shape = tf.shape(x)
    height, width = shape[1], shape[2]
    channels = x.shape[-1]
    if channels is None:
        raise ValueError(f"max_pool_with_mask needs a known channel count, got input shape {x.shape}")
    top, bottom = _window_offsets(height, k, padding)
    left, right = _window_offsets(width, k, padding)
    if padding == "same":
        # Padded positions must never win a window: pad with -inf.
        grid = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=float("-inf"))
    else:
        grid = x[:, : height + bottom, : width + right, :]
    windows = tf.nn.space_to_depth(grid, k)  # [B, h, w, (dy * k + dx) * C + c]
    pooled_shape = tf.shape(windows)
    windows = tf.reshape(windows, [pooled_shape[0], pooled_shape[1], pooled_shape[2], k * k, channels])
    first_max = tf.math.argmax(windows, axis=3, output_type=tf.int32)  # first maximum on ties
    choice = tf.equal(tf.expand_dims(first_max, 3), tf.range(k * k, dtype=tf.int32)[:, None])  # [B, h, w, k*k, C]
    pooled = tf.reduce_sum(tf.where(choice, windows, tf.zeros_like(windows)), axis=3)
    grid_mask = tf.nn.depth_to_space(
        tf.reshape(tf.cast(choice, x.dtype), [pooled_shape[0], pooled_shape[1], pooled_shape[2], k * k * channels]),
        k,
    )
    if padding == "same":
        mask = grid_mask[:, top : top + height, left : left + width, :]
    else:
        mask = tf.pad(grid_mask, [[0, 0], [0, -bottom], [0, -right], [0, 0]])
    return pooled, mask


def max_unpool(values, mask, pool_size=2, padding="same"):
    """Place ``values`` (the pooled grid) at the positions ``mask`` marks; zeros elsewhere.

    Equals a scatter of ``values`` to the argmax indices of ``tf.nn.max_pool_with_argmax`` into a
    zero tensor of ``mask``'s shape. The gradient with respect to ``values`` is the incoming
    gradient read at the marked positions; ``mask`` is treated as a constant.
    """
    _check_options(pool_size, padding)
    k = pool_size
    shape = tf.shape(mask)
    height, width = shape[1], shape[2]
    top, bottom = _window_offsets(height, k, padding)
    left, right = _window_offsets(width, k, padding)
    # Nearest-neighbour upsampling by k, exactly: k*k copies along channels, then DepthToSpace.
    upsampled = tf.nn.depth_to_space(tf.tile(values, [1, 1, 1, k * k]), k)
    if padding == "same":
        upsampled = upsampled[:, top : top + height, left : left + width, :]
    else:
        upsampled = tf.pad(upsampled, [[0, 0], [0, -bottom], [0, -right], [0, 0]])
    return upsampled * tf.stop_gradient(tf.cast(mask, upsampled.dtype))


def _check_unpool_shapes(values_shape, mask_shape, pool_size, padding, layer_name):
    if len(values_shape) != 4 or len(mask_shape) != 4:
        raise ValueError(
            f"{layer_name}: values and mask must be 4-D [batch, height, width, channels], got "
            f"values {tuple(values_shape)} and mask {tuple(mask_shape)}"
        )
    if values_shape[-1] is not None and mask_shape[-1] is not None and values_shape[-1] != mask_shape[-1]:
        raise ValueError(
            f"{layer_name}: values have {values_shape[-1]} channels but the mask {mask_shape[-1]} "
            f"(values {tuple(values_shape)}, mask {tuple(mask_shape)}); unpooling keeps the channel count"
        )
    for axis, name in ((1, "height"), (2, "width")):
        expected = pooled_size(mask_shape[axis], pool_size, padding)
        if expected is not None and values_shape[axis] is not None and values_shape[axis] != expected:
            raise ValueError(
                f"{layer_name}: values {name} {values_shape[axis]} does not match the mask's {name} "
                f"{mask_shape[axis]} pooled by {pool_size} with padding={padding!r} (expected {expected}); "
                f"values {tuple(values_shape)}, mask {tuple(mask_shape)}"
            )


@keras.saving.register_keras_serializable(package="tfseg")
class MaxPoolingWithMask2D(keras.layers.Layer):
    """Max pooling (stride = ``pool_size``) returning ``(pooled, mask)`` for :class:`MaxUnpooling2D`.

    ``pooled`` equals ``tf.nn.max_pool_with_argmax``'s output; ``mask`` (the input's shape, 1 at the
    first maximum of each window) is the equivalent of its argmax, built from TFLite builtin ops.
    """

    def __init__(self, pool_size=2, padding="same", **kwargs):
        super().__init__(**kwargs)
        _check_options(pool_size, padding)
        self.pool_size = pool_size
        self.padding = padding

    def call(self, x):
        return max_pool_with_mask(x, self.pool_size, self.padding)

    def compute_output_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"{self.name}: input must be 4-D [batch, height, width, channels], got {tuple(input_shape)}"
            )
        batch, height, width, channels = input_shape
        pooled = (batch, pooled_size(height, self.pool_size, self.padding),
                  pooled_size(width, self.pool_size, self.padding), channels)
        return pooled, tuple(input_shape)

    def compute_output_spec(self, x):
        pooled_shape, mask_shape = self.compute_output_shape(x.shape)
        return tuple(keras.KerasTensor(shape, dtype=self.compute_dtype) for shape in (pooled_shape, mask_shape))

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "padding": self.padding}


@keras.saving.register_keras_serializable(package="tfseg")
class MaxUnpooling2D(keras.layers.Layer):
    """``MaxUnpooling2D()([values, mask])``: values at the switches of :class:`MaxPoolingWithMask2D`.

    ``values`` is on the pooled grid, ``mask`` is the pooling layer's second output; the result has
    the mask's shape (the pooling input's), so odd sizes come back exactly (23x30 -> 45x60).
    ``pool_size`` and ``padding`` must be the pooling layer's.
    """

    def __init__(self, pool_size=2, padding="same", **kwargs):
        super().__init__(**kwargs)
        _check_options(pool_size, padding)
        self.pool_size = pool_size
        self.padding = padding

    def call(self, inputs):
        values, mask = inputs
        return max_unpool(values, mask, self.pool_size, self.padding)

    def compute_output_shape(self, input_shapes):
        values_shape, mask_shape = input_shapes
        _check_unpool_shapes(values_shape, mask_shape, self.pool_size, self.padding, self.name)
        return tuple(mask_shape[:3]) + (values_shape[3] if values_shape[3] is not None else mask_shape[3],)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "padding": self.padding}
