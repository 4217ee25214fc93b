"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015, arXiv 1505.04597).

``mode="paper"``: unpadded 3x3 convolutions, 2x2 max pooling, 2x2 up-convolutions halving the
channels, crop-and-concatenate skips, 1x1 classifier; 572x572 in gives 388x388 out (see
:func:`paper_output_size`). ``mode="practical"``: 'same' convolutions with optional batch norm; the
input is zero-padded to a multiple of 16 and the logits are cropped back to the input size.
``input_stride=2`` (practical mode) runs the network on the input average-pooled 2x2 and upsamples
the logits bilinearly back: the early downsampling of real-time networks (ENet, Paszke et al. 2016;
ICNet), four times fewer operations for the same receptive field in pixels of the input.
"""

from __future__ import annotations

import keras

from tfseg.layers.preprocessing import ImagePreprocessing
from tfseg.layers.spatial import CropLike, PadToMultiple, ResizeLike

UNET_MODES = ("paper", "practical")


def paper_output_size(size, depth=4):
    """Output size of the paper-mode U-Net for an input side ``size`` (572 -> 388); None if too small.

    Each level loses 4 pixels to the two valid convolutions; the pooling floors odd sizes (the
    paper picks sizes where every pooled map is even, which keeps the skips centred exactly).
    """
    for _ in range(depth):
        size = (size - 4) // 2
        if size < 1:
            return None
    size -= 4
    if size < 1:
        return None
    for _ in range(depth):
        size = 2 * size - 4
    return size


# Layer-name prefixes of the contracting path (the encoder): down1..down{depth} and the bottom block.
CONTRACTING_PREFIXES = ("down", "bottom")


def contracting_path_layers(model):
    """The layers of a tfseg U-Net's contracting path, what fine-tuning with a frozen encoder freezes."""
    if not model.name.startswith("unet_"):
        return []
    return [layer for layer in model.layers if layer.name.startswith(CONTRACTING_PREFIXES)]


def _double_conv(x, filters, name, padding, batch_norm):
    for i in (1, 2):
        x = keras.layers.Conv2D(
            filters, 3, padding=padding, use_bias=not batch_norm, kernel_initializer="he_normal",
            name=f"{name}_conv{i}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{name}_conv{i}_bn")(x)
        x = keras.layers.Activation("relu", name=f"{name}_conv{i}_relu")(x)
    return x


def unet(num_classes, input_shape=(None, None, 3), *, mode="practical", base_filters=64, depth=4,
         batch_norm=None, dropout=0.0, input_stride=1, include_preprocessing=True):
    """U-Net; ``batch_norm`` defaults to False in paper mode and True in practical mode.

    ``dropout`` is applied at the end of the contracting path, as in the paper ("drop-out layers at
    the end of the contracting path"). ``input_stride`` (1, 2 or 4; practical mode): the network runs
    on the input average-pooled by this factor, and the logits are upsampled bilinearly to the input.
    """
    if mode not in UNET_MODES:
        raise ValueError(f"U-Net mode={mode!r}; valid: {list(UNET_MODES)}")
    if input_stride not in (1, 2, 4) or (input_stride != 1 and mode == "paper"):
        raise ValueError(f"U-Net input_stride={input_stride!r}; valid: 1, 2 or 4 (practical mode only)")
    if batch_norm is None:
        batch_norm = mode == "practical"
    padding = "valid" if mode == "paper" else "same"
    if mode == "paper":
        for axis, side in zip(("height", "width"), input_shape[:2]):
            if side is not None and paper_output_size(side, depth) is None:
                raise ValueError(
                    f"U-Net paper mode: input {axis} {side} is too small for depth {depth} "
                    "(every level needs room for two unpadded 3x3 convolutions); 572 gives 388"
                )

    inputs = keras.Input(input_shape, name="image")
    x = ImagePreprocessing("tf", name="preprocessing")(inputs) if include_preprocessing else inputs
    if mode == "practical":
        x = PadToMultiple(2**depth * input_stride, name="pad_to_multiple")(x)
    padded = x
    if input_stride > 1:
        x = keras.layers.AveragePooling2D(input_stride, name="input_pool")(x)
    skips = []
    for level in range(depth):
        x = _double_conv(x, base_filters * 2**level, f"down{level + 1}", padding, batch_norm)
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"down{level + 1}_pool")(x)
    x = _double_conv(x, base_filters * 2**depth, "bottom", padding, batch_norm)
    if dropout:
        x = keras.layers.Dropout(dropout, name="bottom_dropout")(x)
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        x = keras.layers.Conv2DTranspose(filters, 2, strides=2, name=f"up{level + 1}_upconv")(x)
        skip = CropLike("center", name=f"up{level + 1}_crop")([skips[level], x]) if mode == "paper" else skips[level]
        x = keras.layers.Concatenate(name=f"up{level + 1}_concat")([skip, x])
        x = _double_conv(x, filters, f"up{level + 1}", padding, batch_norm)
    # Float32 logits under mixed precision: the last layer computes in float32.
    if mode == "practical":
        logits = keras.layers.Conv2D(num_classes, 1, name="logits")(x)
        if input_stride > 1:
            # Bilinear, half-pixel centres (keras UpSampling2D's resize, which needs static shapes under tf.function).
            logits = ResizeLike(name="upsample_logits")([logits, padded])
        logits = CropLike(0, dtype="float32", name="crop_to_input")([logits, inputs])
    else:
        logits = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="logits")(x)
    return keras.Model(inputs, logits, name=f"unet_{mode}")
