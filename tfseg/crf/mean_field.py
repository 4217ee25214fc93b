"""Mean-field inference of the fully connected CRF (Krähenbühl & Koltun, NIPS 2011).

Computes what pydensecrf's ``DenseCRF2D`` computes with ``addPairwiseGaussian`` +
``addPairwiseBilateral`` and the default symmetric normalisation (Krähenbühl & Koltun,
ICML 2013): ``Q = softmax(-U)``, then per iteration
``Q = softmax(-U - sum_k compat_k(n_k * K_k(n_k * Q)))`` with ``n_k = 1 / sqrt(K_k(1))``.

Two ways to filter, chosen with ``implementation``:

- ``"fast"``: lattice splat/slice as ``tf.sparse.sparse_dense_matmul`` against the sparse
  (points x vertices) matrix of barycentric weights;
- ``"portable"``: the same lattice with ``unsorted_segment_sum`` + ``gather`` only, which
  converts to TFLite builtins (no Flex ops).

The spatial Gaussian term is either filtered on its own 2-D lattice, exactly as pydensecrf
does, or (``gaussian_filter="convolution"``) by an exact separable depthwise Gaussian
convolution truncated at 4 sigma; with symmetric normalisation the lattice's constant
factor cancels and the labels agree with pydensecrf's (measured in tests/test_crf.py).
Both forms are TFLite builtins.
"""

from __future__ import annotations

import math
from numbers import Number

import numpy as np
import tensorflow as tf

from tfseg.crf.lattice import IMPLEMENTATIONS, PermutohedralLattice

GAUSSIAN_FILTERS = ("auto", "convolution", "lattice")
# "auto" convolves when the truncated kernel has at most this radius (pixels), else uses the lattice.
MAX_CONVOLUTION_RADIUS = 64
TRUNCATE_SIGMAS = 4.0


def _pixel_grid(height, width):
    """Column (x) and row (y) coordinates of every pixel, float32 [H*W] each, row-major."""
    ys, xs = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")
    return tf.reshape(xs, [-1]), tf.reshape(ys, [-1])


class LatticeGaussianFilter:
    """Symmetrically normalised permutohedral-lattice filter of a batch of [B, H, W, C] fields.

    ``position_std``: sxy; ``color_std``: srgb or None (then the kernel is spatial only and one
    lattice over H x W serves every image of the batch, the batch being folded into channels).
    ``output_scale`` (a number) multiplies the result; the fast path folds it, the
    normalisation and the lattice's alpha into the sparse splat/slice matrices, built once.
    """

    def __init__(self, image, position_std, color_std=None, implementation="fast", output_scale=1.0):
        shape = tf.shape(image)
        self.batch, self.height, self.width = shape[0], shape[1], shape[2]
        self.implementation = implementation
        self.output_scale = float(output_scale)
        xs, ys = _pixel_grid(self.height, self.width)
        sxy = np.float32(position_std)
        self.shared_across_batch = color_std is None
        if self.shared_across_batch:
            self.lattice = PermutohedralLattice([xs / sxy, ys / sxy])
        else:
            pixels = self.height * self.width
            colors = tf.unstack(tf.reshape(tf.cast(image, tf.float32), [-1, 3]) / np.float32(color_std), axis=1)
            positions = [tf.tile(xs / sxy, [self.batch]), tf.tile(ys / sxy, [self.batch])]
            image_index = tf.repeat(tf.range(self.batch), pixels)
            self.lattice = PermutohedralLattice(positions + colors, image_index)
        ones = tf.ones([self.lattice.num_points, 1], tf.float32)
        self.norm = tf.math.rsqrt(self.lattice.filter(ones, implementation) + 1e-20)  # [P, 1]
        self.output_norm = self.norm * self.output_scale
        if implementation == "fast":
            self.splat_matrix = self.lattice.sparse_matrix(point_scale=self.norm)
            self.slice_matrix = self.lattice.sparse_matrix(point_scale=self.output_norm * self.lattice.alpha)

    def _to_points(self, field):
        if self.shared_across_batch:  # [B, H, W, C] -> [H*W, B*C]
            return tf.reshape(tf.transpose(field, [1, 2, 0, 3]), [self.height * self.width, -1])
        return tf.reshape(field, [-1, tf.shape(field)[-1]])

    def _from_points(self, points, channels):
        if self.shared_across_batch:
            field = tf.reshape(points, [self.height, self.width, self.batch, channels])
            return tf.transpose(field, [2, 0, 1, 3])
        return tf.reshape(points, [self.batch, self.height, self.width, channels])

    def __call__(self, field):
        channels = tf.shape(field)[-1]
        points = self._to_points(field)
        if self.implementation == "fast":
            splat_matrix, slice_matrix = self.splat_matrix, self.slice_matrix
            if field.dtype != tf.float32:
                splat_matrix = tf.SparseTensor(splat_matrix.indices, tf.cast(splat_matrix.values, field.dtype),
                                               splat_matrix.dense_shape)
                slice_matrix = tf.SparseTensor(slice_matrix.indices, tf.cast(slice_matrix.values, field.dtype),
                                               slice_matrix.dense_shape)
            vertex_values = self.lattice.splat(points, "fast", matrix=splat_matrix)
            vertex_values = self.lattice.blur(vertex_values)
            points = self.lattice.slice(vertex_values, "fast", matrix=slice_matrix)
        else:
            norm = tf.cast(self.norm, field.dtype)
            points = tf.cast(self.output_norm, field.dtype) * self.lattice.filter(norm * points, "portable")
        return self._from_points(points, channels)


class ConvolutionGaussianFilter:
    """Symmetrically normalised exact spatial Gaussian, exp(-d^2 / (2 sxy^2)), as two 1-D depthwise convolutions.

    Truncated at 4 sigma; zero padding at the borders, which the normalisation ``1/sqrt(K 1)``
    accounts for just as the lattice's does. ``output_scale`` multiplies the result.
    """

    def __init__(self, image, position_std, output_scale=1.0):
        radius = int(math.ceil(TRUNCATE_SIGMAS * float(position_std)))
        taps = np.arange(-radius, radius + 1, dtype=np.float64)
        self.taps = np.exp(-0.5 * (taps / float(position_std)) ** 2).astype(np.float32)
        shape = tf.shape(image)
        ones = tf.ones([1, shape[1], shape[2], 1], tf.float32)
        self.norm = tf.math.rsqrt(self._convolve(ones) + 1e-20)  # [1, H, W, 1]
        self.output_norm = self.norm * float(output_scale)

    def _convolve(self, field):
        channels = field.shape[-1] if field.shape[-1] is not None else tf.shape(field)[-1]
        taps = tf.constant(self.taps, field.dtype)
        size = len(self.taps)
        horizontal = tf.tile(tf.reshape(taps, [1, size, 1, 1]), [1, 1, channels, 1])
        vertical = tf.tile(tf.reshape(taps, [size, 1, 1, 1]), [1, 1, channels, 1])
        field = tf.nn.depthwise_conv2d(field, horizontal, [1, 1, 1, 1], "SAME")
        return tf.nn.depthwise_conv2d(field, vertical, [1, 1, 1, 1], "SAME")

    def __call__(self, field):
        norm = tf.cast(self.norm, field.dtype)
        return tf.cast(self.output_norm, field.dtype) * self._convolve(norm * field)


def spatial_gaussian_filter(image, position_std, implementation="fast", gaussian_filter="auto", output_scale=1.0):
    """The smoothness kernel's filter: a convolution or a 2-D lattice (see ``gaussian_filter``)."""
    if gaussian_filter not in GAUSSIAN_FILTERS:
        raise ValueError(f"gaussian_filter={gaussian_filter!r}; valid: {list(GAUSSIAN_FILTERS)}")
    if gaussian_filter == "auto":
        small = math.ceil(TRUNCATE_SIGMAS * float(position_std)) <= MAX_CONVOLUTION_RADIUS
        gaussian_filter = "convolution" if small else "lattice"
    if gaussian_filter == "convolution":
        return ConvolutionGaussianFilter(image, position_std, output_scale)
    return LatticeGaussianFilter(image, position_std, None, implementation, output_scale)


def bilateral_filter(image, position_std, color_std, implementation="fast", output_scale=1.0):
    """The appearance kernel's filter over (x/sxy, y/sxy, r/srgb, g/srgb, b/srgb), one 5-D lattice per batch."""
    return LatticeGaussianFilter(image, position_std, color_std, implementation, output_scale)


def compatibility_transform(compat, num_labels=None):
    """pydensecrf's label-compatibility conventions as a function of the filtered field [..., C].

    A number w is Potts: ``-w * m``; a 1-D array v is ``v * m`` (diagonal, no minus); a 2-D
    matrix M is ``m @ (0.5 (M + M^T))`` (symmetrised, no minus).
    """
    if isinstance(compat, Number):
        weight = float(compat)
        return lambda message: -weight * message
    matrix = np.asarray(compat, dtype=np.float32)
    if matrix.ndim == 1:
        if num_labels is not None and matrix.shape[0] != num_labels:
            raise ValueError(f"compat vector has shape {matrix.shape}; expected ({num_labels},)")
        return lambda message: message * tf.constant(matrix, message.dtype)
    if matrix.ndim == 2:
        if matrix.shape[0] != matrix.shape[1] or (num_labels is not None and matrix.shape[0] != num_labels):
            raise ValueError(f"compat matrix has shape {matrix.shape}; expected ({num_labels}, {num_labels})")
        symmetric = 0.5 * (matrix + matrix.T)
        return lambda message: tf.tensordot(message, tf.constant(symmetric, message.dtype), axes=[[-1], [0]])
    raise ValueError(f"compat must be a number, a 1-D or a 2-D array; got shape {matrix.shape}")


def mean_field(unary, messages, iterations):
    """Mean-field iterations; returns the last pre-softmax scores ``-U + sum_k message_k(Q)``.

    ``unary`` [B, H, W, C]; ``messages``: callables on Q [B, H, W, C] giving each pairwise
    term's contribution, i.e. ``-compat_k(filter_k(Q))`` in pydensecrf's terms. All terms read
    the same Q (synchronous update), as in pydensecrf's ``inference``.
    """
    scores = -unary
    for _ in range(int(iterations)):
        q = tf.nn.softmax(scores, axis=-1)
        scores = tf.add_n([-unary] + [message(q) for message in messages])
    return scores


def _check_inputs(image, unary):
    image = tf.convert_to_tensor(image)
    unary = tf.convert_to_tensor(unary)
    if image.dtype != tf.uint8:
        raise ValueError(f"image must be uint8 RGB [B, H, W, 3] or [H, W, 3]; got dtype {image.dtype.name}")
    if unary.dtype not in (tf.float32, tf.float64, tf.float16, tf.bfloat16):
        raise ValueError(f"unary must be floating point [B, H, W, C] or [H, W, C]; got dtype {unary.dtype.name}")
    if image.shape.rank not in (3, 4):
        raise ValueError(f"image must have rank 3 [H, W, 3] or 4 [B, H, W, 3]; got shape {image.shape}")
    if unary.shape.rank != image.shape.rank:
        raise ValueError(
            f"unary must have the image's rank ({image.shape.rank}); got unary shape {unary.shape} "
            f"for image shape {image.shape}"
        )
    if image.shape[-1] is not None and image.shape[-1] != 3:
        raise ValueError(f"image must have 3 (RGB) channels; got shape {image.shape}")
    spatial = slice(-3, -1)
    for a, b in zip(image.shape[spatial], unary.shape[spatial]):
        if a is not None and b is not None and a != b:
            raise ValueError(f"image and unary must have the same height and width; got image shape "
                             f"{image.shape} and unary shape {unary.shape}")
    if image.shape.rank == 4 and None not in (image.shape[0], unary.shape[0]) and image.shape[0] != unary.shape[0]:
        raise ValueError(f"image and unary must have the same batch size; got image shape {image.shape} "
                         f"and unary shape {unary.shape}")
    return image, unary


def dense_crf(
    image,
    unary,
    *,
    gaussian_sxy=3.0,
    gaussian_compat=3.0,
    bilateral_sxy=80.0,
    bilateral_srgb=13.0,
    bilateral_compat=10.0,
    iterations=10,
    implementation="fast",
    gaussian_filter="auto",
):
    """Dense CRF mean-field marginals (Krähenbühl & Koltun, NIPS 2011), as pydensecrf's DenseCRF2D.

    ``image``: uint8 RGB [B, H, W, 3] or [H, W, 3]; ``unary``: negative log-probabilities
    [B, H, W, C] or [H, W, C]. The parameters mean what they mean in pydensecrf's
    ``addPairwiseGaussian(sxy, compat)`` and ``addPairwiseBilateral(sxy, srgb, rgbim, compat)``
    (compat: number = Potts, 1-D = diagonal, 2-D = matrix, pydensecrf's signs); a compat of 0
    (or None) drops that term. Returns Q, the marginals, with the unary's shape and dtype.

    ``implementation``: "fast" (sparse matmul) or "portable" (segment_sum/gather, TFLite
    builtins). ``gaussian_filter``: "convolution" (exact separable Gaussian), "lattice" (as
    pydensecrf) or "auto" (convolution unless the kernel radius exceeds 64 pixels).
    """
    image, unary = _check_inputs(image, unary)
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation={implementation!r}; valid: {list(IMPLEMENTATIONS)}")
    if int(iterations) < 0:
        raise ValueError(f"iterations must be >= 0; got {iterations}")
    single = image.shape.rank == 3
    if single:
        image, unary = image[None], unary[None]
    num_labels = unary.shape[-1]
    messages = []
    terms = [
        (gaussian_compat, lambda scale: spatial_gaussian_filter(image, gaussian_sxy, implementation, gaussian_filter,
                                                                 output_scale=scale)),
        (bilateral_compat, lambda scale: bilateral_filter(image, bilateral_sxy, bilateral_srgb, implementation,
                                                          output_scale=scale)),
    ]
    for compat, make_filter in terms:
        if compat is None or _is_zero(compat):
            continue
        if isinstance(compat, Number):  # Potts: -compat(m) = +w m, folded into the filter's output
            messages.append(make_filter(float(compat)))
        else:
            filter_fn, transform = make_filter(1.0), compatibility_transform(compat, num_labels)
            messages.append(lambda q, f=filter_fn, t=transform: -t(f(q)))
    q = tf.nn.softmax(mean_field(unary, messages, iterations), axis=-1)
    return q[0] if single else q


def _is_zero(compat):
    return isinstance(compat, Number) and float(compat) == 0.0
