"""Weight initialisers used by the FCN upsampling layers."""

from __future__ import annotations

import keras
import numpy as np


def bilinear_kernel(kernel_size, channels):
    """A (k, k, channels, channels) transposed-conv kernel that upsamples each channel bilinearly.

    Same filter as the FCN reference code's ``upsample_filt`` (Long et al. 2015), placed on the
    diagonal so channel i only feeds channel i.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    grid = np.arange(kernel_size)
    filt_1d = 1 - np.abs(grid - center) / factor
    filt = np.outer(filt_1d, filt_1d).astype("float32")
    kernel = np.zeros((kernel_size, kernel_size, channels, channels), dtype="float32")
    for c in range(channels):
        kernel[:, :, c, c] = filt
    return kernel


@keras.saving.register_keras_serializable(package="tfseg")
class BilinearUpsampling(keras.initializers.Initializer):
    """Initialise a square ``Conv2DTranspose`` kernel (k, k, out, in) with out == in to bilinear upsampling."""

    def __call__(self, shape, dtype=None):
        kh, kw, out_channels, in_channels = shape
        if kh != kw or out_channels != in_channels:
            raise ValueError(f"bilinear upsampling needs a square kernel with out == in channels, got shape {shape}")
        return keras.ops.convert_to_tensor(bilinear_kernel(kh, in_channels), dtype=dtype or "float32")

    def get_config(self):
        return {}
