"""Trainable dense CRF layer: mean field as a recurrent layer (CRF-as-RNN, Zheng et al. ICCV 2015).

The mean-field iterations of Krähenbühl & Koltun's fully connected CRF (NIPS 2011) with a
spatial Gaussian and a bilateral kernel, each filtered on a permutohedral lattice (Adams et
al. 2010) built once per image; see :mod:`tfseg.crf`. As in CRF-as-RNN, each kernel's output
is mixed by a trainable C x C weight matrix (initialised to ``compat * identity``) and the
result by a trainable C x C label-compatibility matrix (initialised to ``-identity``, the
Potts model), so that at initialisation the layer computes exactly what
``tfseg.crf.dense_crf`` (and pydensecrf) computes with Potts weights.
"""

from __future__ import annotations

from numbers import Number

import keras
import numpy as np
import tensorflow as tf

from tfseg.crf.mean_field import PairwiseFilters, check_options, check_widths, mean_field_inference

DEFAULT_COMPATS = {"gaussian": 3.0, "bilateral": 10.0}
CRF_MODES = ("exact", "fast")
# The fast mode where no card tunes one: mean field at 1/4 resolution, 3 iterations (tools/results/crf.md).
FAST_MODE = {"downsample": 4, "iterations": 3}


def crf_mode_options(mode):
    """tfseg's DenseCRF options of ``mode``: "exact" (the layer's defaults) or "fast" (``FAST_MODE``)."""
    check_crf_mode(mode)
    return dict(FAST_MODE) if mode == "fast" else {}


def check_crf_mode(mode):
    if mode not in CRF_MODES:
        raise ValueError(f"CRF mode {mode!r}; valid: {list(CRF_MODES)}")


@keras.saving.register_keras_serializable(package="tfseg")
class DenseCRF(keras.layers.Layer):
    """Refine logits with a dense CRF: ``(image, logits) -> refined logits`` (same shape as logits).

    ``image``: RGB [B, H, W, 3], uint8 or float in [0, 255]; ``logits``: [B, H, W, C] with a
    static C. The unary is ``-logits``; the output is the last iteration's pre-softmax scores
    ``logits - mu (W_g filter_g(Q) + W_b filter_b(Q))``, so ``softmax(output)`` are the CRF
    marginals.

    ``downsample`` f > 1 is the fast mode for real time: mean field runs on the image and the
    logits average-pooled f x f (kernel widths ``*_sxy`` divided by f, ``bilateral_srgb`` kept),
    and its pairwise term (the low-resolution scores minus the pooled logits) is upsampled
    bilinearly and added to the full-resolution logits, so the network's own detail stays. The
    cost falls by about f^2 (the DenseCRF of Krähenbühl & Koltun at reduced resolution, as in
    their paper's downsampled experiments and later real-time CRF work). ``iterations`` are used at inference, ``training_iterations`` when called with
    ``training=True`` (CRF-as-RNN: 5 in training, 10 at test). ``implementation="portable"``
    keeps the graph to TFLite builtins (use it for export); "fast" uses sparse matmuls.

    ``gaussian_compat`` and ``bilateral_compat`` are the kernels' initial Potts weights, named as in
    ``tfseg.crf.dense_crf`` (and pydensecrf); a compat of 0 leaves that kernel out (no weights, no cost); ``gaussian_weight`` and ``bilateral_weight`` are
    accepted as aliases (their earlier names, still read from saved configs); give one or the other.
    """

    def __init__(
        self,
        gaussian_sxy=3.0,
        gaussian_compat=3.0,
        bilateral_sxy=80.0,
        bilateral_srgb=13.0,
        bilateral_compat=10.0,
        iterations=10,
        training_iterations=5,
        implementation="fast",
        gaussian_filter="auto",
        gaussian_weight=None,
        bilateral_weight=None,
        downsample=1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_options(implementation, gaussian_filter, iterations=iterations,
                      training_iterations=training_iterations)
        check_widths(gaussian_sxy=gaussian_sxy, bilateral_sxy=bilateral_sxy, bilateral_srgb=bilateral_srgb)
        check_downsample(downsample)
        gaussian_compat = _potts_weight("gaussian", gaussian_compat, gaussian_weight)
        bilateral_compat = _potts_weight("bilateral", bilateral_compat, bilateral_weight)
        self.gaussian_sxy = float(gaussian_sxy)
        self.gaussian_compat = gaussian_compat
        self.bilateral_sxy = float(bilateral_sxy)
        self.bilateral_srgb = float(bilateral_srgb)
        self.bilateral_compat = bilateral_compat
        self.iterations = int(iterations)
        self.training_iterations = int(training_iterations)
        self.implementation = implementation
        self.gaussian_filter = gaussian_filter
        self.downsample = int(downsample)

    @property
    def mode(self):
        """"fast" (mean field at reduced resolution, ``downsample`` > 1) or "exact"."""
        return "fast" if self.downsample > 1 else "exact"

    def describe(self):
        """One line for progress output: the mode and what it runs."""
        where = f"at 1/{self.downsample} resolution" if self.downsample > 1 else "at full resolution"
        return (f"{self.mode} dense CRF ({self.iterations} iterations {where}; bilateral sxy {self.bilateral_sxy:g}, "
                f"srgb {self.bilateral_srgb:g}, compat {self.bilateral_compat:g}; Gaussian sxy {self.gaussian_sxy:g}, "
                f"compat {self.gaussian_compat:g})")

    @property
    def gaussian_weight(self):
        """Alias of ``gaussian_compat`` (the name before tfseg.crf and the layer were aligned)."""
        return self.gaussian_compat

    @property
    def bilateral_weight(self):
        """Alias of ``bilateral_compat``."""
        return self.bilateral_compat

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 2:
            raise ValueError(f"DenseCRF takes [image, logits]; got input shape {input_shape}")
        image_shape, logits_shape = (tuple(s) for s in input_shape)
        if len(image_shape) != 4 or image_shape[-1] not in (3, None):
            raise ValueError(f"image must be [B, H, W, 3]; got shape {image_shape}")
        if len(logits_shape) != 4 or logits_shape[-1] is None:
            raise ValueError(f"logits must be [B, H, W, C] with a known C; got shape {logits_shape}")
        labels = int(logits_shape[-1])
        identity = np.eye(labels, dtype=np.float32)
        self.gaussian_kernel_weights = self.bilateral_kernel_weights = None
        if self.gaussian_compat != 0:
            self.gaussian_kernel_weights = self.add_weight(
                name="gaussian_kernel_weights", shape=(labels, labels),
                initializer=keras.initializers.Constant(self.gaussian_compat * identity))
        if self.bilateral_compat != 0:
            self.bilateral_kernel_weights = self.add_weight(
                name="bilateral_kernel_weights", shape=(labels, labels),
                initializer=keras.initializers.Constant(self.bilateral_compat * identity))
        self.compatibility = self.add_weight(
            name="compatibility", shape=(labels, labels),
            initializer=keras.initializers.Constant(-identity))

    def call(self, inputs, training=None):
        image, logits = inputs
        _check_shapes(image, logits)
        iterations = self.training_iterations if training else self.iterations
        if iterations == 0 or not self._kernels():
            return logits
        if self.downsample > 1:
            return self._coarse_mean_field(image, logits, iterations)
        return self._mean_field(image, logits, iterations)

    def _kernels(self):
        """``[(position_std, color_std or None, weights)]`` of the kernels in use (a compat of 0 drops one)."""
        kernels = [(self.gaussian_sxy, None, self.gaussian_kernel_weights),
                   (self.bilateral_sxy, self.bilateral_srgb, self.bilateral_kernel_weights)]
        return [k for k in kernels if k[2] is not None]

    def _mean_field(self, image, logits, iterations, scale=1.0):
        kernels = self._kernels()
        filters = PairwiseFilters(image, [(sxy * scale, srgb) for sxy, srgb, _ in kernels],
                                  self.implementation, self.gaussian_filter)
        compatibility = tf.cast(self.compatibility, logits.dtype)
        # contribution of kernel k to the scores, per pixel (column vectors): -mu W_k f_k;
        # on row vectors [..., C]: f_k @ A_k^T with A_k = -mu W_k.
        mixes = [-tf.matmul(compatibility, tf.cast(w, logits.dtype)) for _, _, w in kernels]
        transforms = [lambda x, a=a: tf.matmul(x, a, transpose_b=True) for a in mixes]
        return mean_field_inference(-logits, (filters, transforms), iterations)

    def _coarse_mean_field(self, image, logits, iterations):
        """Fast mode: mean field on f x f averages, its pairwise term upsampled onto the full-size logits."""
        f = self.downsample
        pooled_image = tf.nn.avg_pool2d(tf.cast(image, tf.float32), f, f, "SAME")
        pooled_logits = tf.nn.avg_pool2d(logits, f, f, "SAME")
        scores = self._mean_field(pooled_image, pooled_logits, iterations, scale=1.0 / f)
        size = tf.shape(logits)[1:3] if None in logits.shape[1:3] else logits.shape[1:3]
        pairwise = tf.raw_ops.ResizeBilinear(images=scores - pooled_logits, size=size,
                                             align_corners=False, half_pixel_centers=True)
        return logits + tf.cast(pairwise, logits.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1])

    def get_config(self):
        return {
            **super().get_config(),
            "gaussian_sxy": self.gaussian_sxy,
            "gaussian_compat": self.gaussian_compat,
            "bilateral_sxy": self.bilateral_sxy,
            "bilateral_srgb": self.bilateral_srgb,
            "bilateral_compat": self.bilateral_compat,
            "iterations": self.iterations,
            "training_iterations": self.training_iterations,
            "implementation": self.implementation,
            "gaussian_filter": self.gaussian_filter,
            "downsample": self.downsample,
        }


def check_downsample(downsample):
    """``downsample`` must be a positive integer (1: the exact CRF); the error names the argument."""
    if isinstance(downsample, bool) or not isinstance(downsample, Number) or int(downsample) != downsample \
            or downsample < 1:
        raise ValueError(f"downsample must be a positive integer (1: the exact CRF, 2 or 4: the fast mode); "
                         f"got {downsample!r}")


def _potts_weight(kernel, compat, weight):
    """The kernel's initial Potts weight from ``<kernel>_compat`` or its alias ``<kernel>_weight`` (a number)."""
    if weight is not None:
        if compat != DEFAULT_COMPATS[kernel]:
            raise ValueError(f"give {kernel}_compat or its alias {kernel}_weight, not both; got "
                             f"{kernel}_compat={compat!r} and {kernel}_weight={weight!r}")
        compat = weight
    if not isinstance(compat, Number):
        raise ValueError(f"{kernel}_compat must be a number (the initial Potts weight; the layer learns "
                         f"the matrices); got {compat!r}")
    return float(compat)


def _check_shapes(image, logits):
    if image.shape.rank != 4 or (image.shape[-1] is not None and image.shape[-1] != 3):
        raise ValueError(f"image must be [B, H, W, 3]; got shape {image.shape}")
    if logits.shape.rank != 4:
        raise ValueError(f"logits must be [B, H, W, C]; got shape {logits.shape}")
    for a, b in zip(image.shape[:3], logits.shape[:3]):
        if a is not None and b is not None and a != b:
            raise ValueError(f"image and logits must share batch, height and width; got image shape "
                             f"{image.shape} and logits shape {logits.shape}")
