"""Mean-field inference of the fully connected CRF (Krähenbühl & Koltun, NIPS 2011).

Computes what pydensecrf's ``DenseCRF2D`` computes with ``addPairwiseGaussian`` +
``addPairwiseBilateral`` and the default symmetric normalisation (Krähenbühl & Koltun,
ICML 2013): ``Q = softmax(-U)``, then per iteration
``Q = softmax(-U - sum_k compat_k(n_k * K_k(n_k * Q)))`` with ``n_k = 1 / sqrt(K_k(1))``.

Two ways to filter, chosen with ``implementation``:

- ``"fast"``: lattice splat/slice as ``tf.sparse.sparse_dense_matmul`` against the sparse
  (points x vertices) matrix of barycentric weights;
- ``"portable"``: the same lattice with ``unsorted_segment_sum`` + ``gather`` only, which
  converts to TFLite builtins (no Flex ops); its lattice keys go through
  ``tfseg.crf.hashing.HashTable`` (TFLite's UNIQUE is far too slow on long inputs), the state
  stays [points, labels] across iterations, and for a static image size the spatial
  Gaussian's lattice (which depends on the size only) is built at trace time and kept as
  constants (``SpatialLattice``). Measured in the LiteRT interpreter by
  tools/bench_crf_tflite.py (tools/results/crf.md).

The spatial Gaussian term is filtered on its own 2-D lattice, exactly as pydensecrf does (the
default: on the fast path it shares the bilateral lattice's splat and slice matmuls, which
measured faster than convolving), or with ``gaussian_filter="convolution"`` by an exact
separable depthwise Gaussian convolution truncated at 4 sigma; with symmetric normalisation the
lattice's constant factor cancels and the labels agree with pydensecrf's on 99.96 % of pixels
(tools/results/crf.md). ``gaussian_filter="grid"`` (``GridGaussianFilter``, the fast choice for
fixed-size TFLite files) splats bilinearly onto a grid of stride floor(sxy), blurs it and slices it by
a bilinear resize: 99.95 % agreement, at a fraction of the lattice's cost in TFLite. All forms
are TFLite builtins.
"""

from __future__ import annotations

import functools
import math
from numbers import Number

import numpy as np
import tensorflow as tf

from tfseg.crf.lattice import IMPLEMENTATIONS, PermutohedralLattice

GAUSSIAN_FILTERS = ("auto", "convolution", "grid", "lattice")
TRUNCATE_SIGMAS = 4.0
# The fast path splits the points into this many shards whose sparse matmuls (single-threaded
# kernels in TF) run concurrently; 2 matches the 2-core target machine.
SPARSE_SHARDS = 2


def _pixel_grid(height, width):
    """Column (x) and row (y) coordinates of every pixel, float32 [H*W] each, row-major."""
    ys, xs = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")
    return tf.reshape(xs, [-1]), tf.reshape(ys, [-1])


class SpatialLattice:
    """The spatial Gaussian's lattice for a batch of images of a static size, built once at trace time.

    The features (x / sxy, y / sxy) depend only on the image size, so for a static height and width
    the lattice of one image is built eagerly (same ops, same numbers as at run time) and kept as
    constants; a (possibly dynamic) batch repeats it with per-image vertex offsets. In a TFLite file
    of fixed input size it costs nothing at run time. Same attributes as ``PermutohedralLattice``.
    """

    def __init__(self, height, width, position_std, batch):
        vertex_index, barycentric, neighbours, vertices = _spatial_lattice_arrays(int(height), int(width),
                                                                                  float(position_std))
        self.dimension = 2
        self.alpha = 1.0 / (1.0 + 2.0**-2)
        offsets = tf.range(batch) * vertices  # [B]
        self.num_points = batch * vertex_index.shape[1]
        self.num_vertices = batch * vertices
        self.vertex_index = tf.reshape(tf.transpose(vertex_index[None] + offsets[:, None, None], [1, 0, 2]),
                                       [3, -1])  # [3, B P], images one after the other
        self.barycentric = tf.tile(tf.constant(barycentric), [1, batch])

        def repeat(neighbour):  # absent (= vertices) -> absent (= B vertices)
            present = neighbour < vertices
            return tf.reshape(tf.where(present[None], neighbour[None] + offsets[:, None], self.num_vertices), [-1])

        self.blur_neighbours = [(repeat(minus), repeat(plus)) for minus, plus in neighbours]


def _eager_available():
    """Whether code lifted out of the current graph runs eagerly (not so under TF1-style graphs)."""
    with tf.init_scope():
        return tf.executing_eagerly()


@functools.lru_cache(maxsize=16)
def _spatial_lattice_arrays(height, width, position_std):
    """numpy (vertex_index [3, P], barycentric [3, P], blur neighbours, vertex count) of one image."""
    with tf.init_scope():  # eager, also while a tf.function is being traced
        xs, ys = _pixel_grid(height, width)
        sxy = np.float32(position_std)
        lattice = PermutohedralLattice([xs / sxy, ys / sxy])
        neighbours = [(minus.numpy(), plus.numpy()) for minus, plus in lattice.blur_neighbours]
        return (lattice.vertex_index.numpy(), lattice.barycentric.numpy(), neighbours,
                int(lattice.num_vertices))


def check_options(implementation, gaussian_filter, **iteration_counts):
    """Validate the options shared by ``dense_crf`` and ``tfseg.layers.DenseCRF``; errors name the argument."""
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation={implementation!r}; valid: {list(IMPLEMENTATIONS)}")
    if gaussian_filter not in GAUSSIAN_FILTERS:
        raise ValueError(f"gaussian_filter={gaussian_filter!r}; valid: {list(GAUSSIAN_FILTERS)}")
    for name, value in iteration_counts.items():
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer; got {value!r}")


def check_widths(**widths):
    """Kernel standard deviations (``gaussian_sxy``, ...) must be positive finite numbers; errors name them."""
    for name, value in widths.items():
        if not (isinstance(value, Number) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number; got {value!r}")


def _resolve_gaussian_filter(gaussian_filter, implementation="fast"):
    if gaussian_filter not in GAUSSIAN_FILTERS:
        raise ValueError(f"gaussian_filter={gaussian_filter!r}; valid: {list(GAUSSIAN_FILTERS)}")
    if gaussian_filter == "auto":
        # On the sparse path the 2-D lattice shares the bilateral term's splat and slice matmuls,
        # which is faster than two convolution passes (tools/results/crf.md) and exact. (On the
        # portable path "grid" is faster in TFLite, at 99.95 % instead of 100 % agreement, and
        # does not yet convert with a dynamic image size: an explicit choice.)
        return "lattice"
    return gaussian_filter


class ConvolutionGaussianFilter:
    """Symmetrically normalised exact spatial Gaussian, exp(-d^2 / (2 sxy^2)), as two 1-D depthwise convolutions.

    Truncated at 4 sigma; zero padding at the borders, which the normalisation ``1/sqrt(K 1)``
    accounts for just as the lattice's does.
    """

    def __init__(self, image, position_std):
        radius = int(math.ceil(TRUNCATE_SIGMAS * float(position_std)))
        taps = np.arange(-radius, radius + 1, dtype=np.float64)
        self.taps = np.exp(-0.5 * (taps / float(position_std)) ** 2).astype(np.float32)
        shape = tf.shape(image)
        ones = tf.ones([1, shape[1], shape[2], 1], tf.float32)
        self.norm = tf.math.rsqrt(self._convolve(ones) + 1e-20)  # [1, H, W, 1]

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
        return norm * self._convolve(norm * field)


def _grid_size(length, stride):
    """Grid points at pixels 0, s, 2s, ... up to the first one at or beyond the last pixel."""
    return (length + stride - 2) // stride + 1


class GridGaussianFilter:
    """Symmetrically normalised spatial Gaussian of width ``sxy`` through a grid of stride s (TFLite-friendly).

    ``K = U B U^T``: U [pixels, grid points] holds the bilinear interpolation weights from grid
    points at every s-th pixel row and column, B is a separable Gaussian on the grid. U^T (the
    splat) is a depthwise convolution with the separable tent kernel ``1 - |k|/s``, stride s; B
    two 1-D depthwise convolutions truncated at 4 sigma; U (the slice) a bilinear resize with
    aligned corners, grid point g onto pixel g s (then cropped to the image). K is exactly
    symmetric, and the symmetric normalisation ``1/sqrt(K 1)`` cancels its constant factor. Each
    bilinear step adds (s^2 - 1)/6 px^2 of variance on average, so B's variance is
    ``sxy^2 - (s^2 - 1)/3`` px^2: K is a Gaussian of variance sxy^2 up to the grid's interpolation,
    as pydensecrf's permutohedral lattice is one up to its own (both shift-variant
    approximations; with s = 1 this is the exact convolution of ``ConvolutionGaussianFilter``).
    ``stride``: s, by default ``max(1, floor(sxy))``.
    """

    def __init__(self, image, position_std, stride=None):
        sxy = float(position_std)
        self.stride = int(stride) if stride is not None else max(1, int(math.floor(sxy)))
        s = self.stride
        if s < 1 or (s * s - 1) / 3.0 >= sxy * sxy:
            raise ValueError(f"grid stride {s} too coarse for sxy={sxy}: needs (s^2 - 1) / 3 < sxy^2")
        self.tent = (1.0 - np.abs(np.arange(-(s - 1), s)) / s).astype(np.float32)
        grid_std = math.sqrt(sxy * sxy - (s * s - 1) / 3.0) / s
        radius = max(1, int(math.ceil(TRUNCATE_SIGMAS * grid_std)))
        taps = np.arange(-radius, radius + 1, dtype=np.float64)
        self.taps = np.exp(-0.5 * (taps / grid_std) ** 2).astype(np.float32)
        shape = tf.shape(image)
        self.height = image.shape[1] if image.shape[1] is not None else shape[1]
        self.width = image.shape[2] if image.shape[2] is not None else shape[2]
        ones = tf.ones_like(image[:1, :, :, :1], tf.float32)  # [1, H, W, 1], static channel (TFLite convs)
        self.norm = tf.math.rsqrt(self._filter(ones) + 1e-20)  # [1, H, W, 1]

    def _depthwise(self, field, kernel, strides, padding="VALID"):
        channels = field.shape[-1] if field.shape[-1] is not None else tf.shape(field)[-1]
        kernel = tf.tile(tf.constant(kernel[:, :, None, None], field.dtype), [1, 1, channels, 1])
        return tf.nn.depthwise_conv2d(field, kernel, strides, padding)

    def _filter(self, field):
        s = self.stride
        if s == 1:
            grid = field
        else:
            rows, cols = _grid_size(self.height, s), _grid_size(self.width, s)
            # VALID tent convolution, stride s, output g centred on pixel g s: s - 1 zeros before,
            # enough after for `rows` (`cols`) outputs.
            padding = [[0, 0], [s - 1, rows * s - self.height], [s - 1, cols * s - self.width], [0, 0]]
            padded = tf.pad(field, padding)
            if padded.shape[-1] is None and field.shape[-1] is not None:
                # dynamic paddings lose the channel count, which TFLite's convolutions need
                padded = tf.reshape(padded, tf.concat([tf.shape(padded)[:3], [field.shape[-1]]], axis=0))
            grid = self._depthwise(padded, np.outer(self.tent, self.tent), [1, s, s, 1])
        size = len(self.taps)
        grid = self._depthwise(grid, self.taps.reshape(1, size), [1, 1, 1, 1], "SAME")
        grid = self._depthwise(grid, self.taps.reshape(size, 1), [1, 1, 1, 1], "SAME")
        if s == 1:
            return grid
        if field.dtype != tf.float32:  # ResizeBilinear computes in float32: the transposed splat instead
            channels = field.shape[-1] if field.shape[-1] is not None else tf.shape(field)[-1]
            kernel = tf.tile(tf.constant(np.outer(self.tent, self.tent)[:, :, None, None], field.dtype),
                             [1, 1, channels, 1])
            full = tf.nn.depthwise_conv2d_backprop_input(tf.shape(padded), kernel, grid, [1, s, s, 1], "VALID")
            return full[:, s - 1:s - 1 + self.height, s - 1:s - 1 + self.width]
        # Aligned corners: output pixel x reads grid coordinate x (cols - 1) / ((cols - 1) s) = x / s.
        upsampled = tf.raw_ops.ResizeBilinear(images=grid, size=tf.stack([(rows - 1) * s + 1, (cols - 1) * s + 1]),
                                              align_corners=True, half_pixel_centers=False)
        static = all(isinstance(n, int) for n in (self.height, self.width))
        if static and ((rows - 1) * s + 1, (cols - 1) * s + 1) == (self.height, self.width):
            return upsampled
        return upsampled[:, :self.height, :self.width]

    def __call__(self, field):
        norm = tf.cast(self.norm, field.dtype)
        return norm * self._filter(norm * field)


class PairwiseFilters:
    """All pairwise kernels of a dense CRF for a batch of images, built once, applied every iteration.

    ``kernels``: list of ``(position_std, color_std)``; ``color_std=None`` is the spatial
    Gaussian (features x/sxy, y/sxy), otherwise the bilateral kernel (x/sxy, y/sxy, r/srgb,
    g/srgb, b/srgb). Each lattice kernel k has its own permutohedral lattice (Adams et al. 2010)
    over all B*H*W pixels (keys offset per image, so images never mix) and its symmetric
    normalisation ``n_k = 1/sqrt(K_k 1)``.

    ``__call__(q, transforms)`` returns ``sum_k transforms[k](n_k * K_k(n_k * q))`` where each
    transform is linear on the label axis (a compatibility). Being linear on labels, it
    commutes with splat, blur and slice, so it is applied to the small vertex tables. All
    lattices' vertex tables are stacked into one (one splat, one blur pass per axis, one slice
    for all kernels), with the normalisations and alpha folded into the splat and slice weights.
    The ``"fast"`` path splats and slices with sparse matmuls; ``"portable"`` with
    unsorted_segment_sum and gather, and deduplicates lattice keys with ``HashTable`` (TFLite
    builtins that stay fast in the LiteRT interpreter).
    """

    def __init__(self, image, kernels, implementation="fast", gaussian_filter="auto", shards=SPARSE_SHARDS):
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation={implementation!r}; valid: {list(IMPLEMENTATIONS)}")
        shape = tf.shape(image)
        self.batch, self.height, self.width = shape[0], shape[1], shape[2]
        self.implementation = implementation
        self.shards = int(shards) if implementation == "fast" else 1
        self.kernels = list(kernels)
        pixels = self.height * self.width
        xs, ys = _pixel_grid(self.height, self.width)
        colors = None
        image_index = tf.repeat(tf.range(self.batch), pixels)
        hashing = "unique" if implementation == "fast" else "table"
        self.terms = []  # per kernel: ("lattice", lattice) or ("convolution", filter)
        for position_std, color_std in self.kernels:
            resolved = _resolve_gaussian_filter(gaussian_filter, implementation)
            if color_std is None and resolved == "convolution":
                self.terms.append(("convolution", ConvolutionGaussianFilter(image, position_std)))
                continue
            if color_std is None and resolved == "grid":
                self.terms.append(("convolution", GridGaussianFilter(image, position_std)))
                continue
            static_size = image.shape[1] is not None and image.shape[2] is not None
            if color_std is None and implementation == "portable" and static_size and _eager_available():
                self.terms.append(("lattice", SpatialLattice(image.shape[1], image.shape[2], position_std, self.batch)))
                continue
            sxy = np.float32(position_std)
            features = [tf.tile(xs / sxy, [self.batch]), tf.tile(ys / sxy, [self.batch])]
            if color_std is not None:
                if colors is None:
                    colors = tf.unstack(tf.reshape(tf.cast(image, tf.float32), [-1, 3]), axis=1)
                features += [c / np.float32(color_std) for c in colors]
            self.terms.append(("lattice", PermutohedralLattice(features, image_index, hashing)))
        self._lattice_terms = [t for t in self.terms if t[0] == "lattice"]
        if self._lattice_terms:
            self._stack_tables()
            if implementation == "fast":
                self._sparse_weights()
            else:
                self._entry_weights()

    def _stack_tables(self):
        """Stack every lattice's vertex table into one [sum_k V_k + 1, C] table (last row: zero).

        Builds, per blur axis, one [2 (sum_k V_k + 1)] neighbour index into the stacked table
        (lattices with fewer axes, absent neighbours and the zero row itself point at the zero
        row), and which lattice each of a point's sum_k (d_k + 1) entries belongs to.
        """
        lattices = [t[1] for t in self._lattice_terms]
        self.vertex_counts = [lattice.num_vertices for lattice in lattices]
        offsets = [tf.constant(0, tf.int32)]
        for count in self.vertex_counts:
            offsets.append(offsets[-1] + count)
        self._offsets = offsets
        self.table_rows = offsets[-1] + 1  # the last row is the zero row
        total = offsets[-1]
        self.blur_indices = []
        for axis in range(max(lattice.dimension for lattice in lattices) + 1):
            parts = []
            for lattice, offset, count in zip(lattices, offsets, self.vertex_counts):
                if axis <= lattice.dimension:
                    pair = tf.stack(lattice.blur_neighbours[axis], axis=0)  # [2, V_k], absent = V_k
                    parts.append(tf.where(pair < count, pair + offset, total))
                else:
                    parts.append(tf.fill([2, count], total))
            parts.append(tf.fill([2, 1], total))
            pair = tf.concat(parts, axis=1)
            self.blur_indices.append((pair[0], pair[1]))
        self._blur_order = None
        if self.implementation == "portable" and any(getattr(l, "slot_order", None) is not None for l in lattices):
            self._slot_ordered_blur(lattices, offsets)
        self.row_blocks = tf.repeat(tf.range(len(lattices) + 1),
                                    tf.stack(self.vertex_counts + [tf.constant(1, tf.int32)]))
        self.entry_lattice = np.concatenate([np.full(lattice.dimension + 1, k) for k, lattice in enumerate(lattices)])
        self._alphas = np.array([lattice.alpha for lattice in lattices], np.float32)

    def _slot_ordered_blur(self, lattices, offsets):
        """Portable path: blur the stacked table in the hash tables' slot order, not in pixel order.

        Splat and slice touch vertices in pixel order (their numbering); the blur's neighbour
        gathers are random in that order when colours vary from pixel to pixel (a noisy image),
        but in slot order a neighbour (a constant key step away) is a nearly constant distance
        away: the gathers stream. One GATHER into slot order before the blur and one back after
        cost less than the locality gained (tools/results/crf.md). Rows are only permuted: the
        blurred values are the same numbers.
        """
        total = offsets[-1]
        parts = []
        for lattice, offset, count in zip(lattices, offsets, self.vertex_counts):
            order = getattr(lattice, "slot_order", None)
            parts.append((tf.range(count) if order is None else order) + offset)
        order = tf.concat(parts + [tf.reshape(total, [1])], axis=0)  # new row -> old row; zero row stays last
        rows = total + 1
        inverse = tf.math.unsorted_segment_sum(tf.range(rows), order, rows)  # old row -> new row
        self._blur_order, self._blur_inverse = order, inverse
        self.blur_indices = [(tf.gather(inverse, tf.gather(minus, order)), tf.gather(inverse, tf.gather(plus, order)))
                             for minus, plus in self.blur_indices]

    def _blur(self, table):
        """[0.5, 1, 0.5] blur of the stacked table [rows, C] along every lattice axis."""
        # Two gathers per axis: slicing one [2, rows, C] gather in two is a slow copy in TFLite.
        for minus, plus in self.blur_indices:
            table = table + 0.5 * (tf.gather(table, minus) + tf.gather(table, plus))
        return table

    def _doubled_blur(self, table):
        """``2**len(blur_indices)`` times ``_blur(table)``: one ADD_N per axis (2 t + t_minus + t_plus).

        Every row is doubled on every axis (a missing axis gathers the zero row twice), so the
        factor is the same for all lattices; the portable weights divide it out.
        """
        if self._blur_order is not None:
            table = tf.gather(table, self._blur_order)
        for minus, plus in self.blur_indices:
            table = tf.add_n([table, table, tf.gather(table, minus), tf.gather(table, plus)])
        if self._blur_order is not None:
            table = tf.gather(table, self._blur_inverse)
        return table

    def _entry_weights(self):
        """Portable path: entry-major [E, P] vertex rows and splat/slice weights, E = sum_k (d_k + 1).

        The normalisations ``K_k 1`` of all lattices come from one splat of the barycentric
        weights, one blur and one slice (the lattices' row blocks are disjoint, so one column
        serves them all).
        """
        lattices = [t[1] for t in self._lattice_terms]
        self.entry_rows = tf.concat([lattice.vertex_index + offset
                                     for lattice, offset in zip(lattices, self._offsets)], axis=0)  # [E, P]
        self._flat_entry_rows = tf.reshape(self.entry_rows, [-1])
        weights = tf.concat([lattice.barycentric for lattice in lattices], axis=0)  # [E, P]
        table = tf.math.unsorted_segment_sum(tf.reshape(weights, [-1, 1]), self._flat_entry_rows, self.table_rows)
        sliced = tf.gather(self._doubled_blur(table)[:, 0], self.entry_rows) * weights  # [E, P]
        bounds = np.cumsum([0] + [lattice.dimension + 1 for lattice in lattices])
        ones = tf.stack([tf.reduce_sum(sliced[a:b], axis=0) for a, b in zip(bounds[:-1], bounds[1:])])  # [K, P]
        undo_doubling = 2.0 ** -len(self.blur_indices)  # exact: a power of two
        alphas = self._alphas * np.float32(undo_doubling)
        norms = tf.math.rsqrt(ones * alphas[:, None] + 1e-20)
        entry_norms = tf.gather(norms, self.entry_lattice)  # [E, P]
        self.splat_weights = weights * entry_norms
        self.slice_weights = weights * entry_norms * alphas[self.entry_lattice][:, None]

    def _sparse_weights(self):
        """Fast path: per point shard, one sparse index set shared by three value sets.

        Plain barycentric weights (to compute every lattice's normalisation K_k 1 with one splat
        and one slice), and the splat and slice weights with normalisation and alpha folded in.
        """
        lattices = [t[1] for t in self._lattice_terms]
        total = self.table_rows - 1
        points = lattices[0].num_points
        bounds = [points * s // self.shards for s in range(self.shards + 1)]
        self.shard_sizes = [stop - start for start, stop in zip(bounds[:-1], bounds[1:])]
        entry_lattice = self.entry_lattice
        alphas = self._alphas[entry_lattice]
        plain_matrices = []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            # Point-major order (all of a point's entries together): each row is touched once.
            columns = tf.concat([tf.transpose(lattice.vertex_index[:, start:stop]) + offset
                                 for lattice, offset in zip(lattices, self._offsets)], axis=1)  # [n, entries]
            rows = tf.repeat(tf.range(stop - start, dtype=tf.int64), len(entry_lattice))
            indices = tf.stack([rows, tf.cast(tf.reshape(columns, [-1]), tf.int64)], axis=1)
            values = tf.concat([tf.transpose(lattice.barycentric[:, start:stop]) for lattice in lattices], axis=1)
            dense_shape = tf.stack([tf.cast(stop - start, tf.int64), tf.cast(total + 1, tf.int64)])
            plain_matrices.append((indices, values, dense_shape))

        # K_k 1 for every lattice k at once: splat ones, blur, slice a table with one column per lattice.
        table = tf.add_n([tf.sparse.sparse_dense_matmul(tf.SparseTensor(i, tf.reshape(v, [-1]), shape),
                                                        tf.ones([size, 1]), adjoint_a=True)
                          for (i, v, shape), size in zip(plain_matrices, self.shard_sizes)])
        per_lattice = self._blur(table) * tf.one_hot(self.row_blocks, len(lattices), dtype=tf.float32)  # [rows, K]
        self.splat_matrices, self.slice_matrices = [], []
        for indices, values, dense_shape in plain_matrices:
            plain = tf.SparseTensor(indices, tf.reshape(values, [-1]), dense_shape)
            norms = tf.math.rsqrt(tf.sparse.sparse_dense_matmul(plain, per_lattice) * self._alphas + 1e-20)  # [n, K]
            entry_norms = tf.gather(norms, entry_lattice, axis=1)  # [n, entries]
            self.splat_matrices.append(tf.SparseTensor(indices, tf.reshape(values * entry_norms, [-1]), dense_shape))
            self.slice_matrices.append(
                tf.SparseTensor(indices, tf.reshape(values * entry_norms * alphas, [-1]), dense_shape))

    @property
    def point_sharded(self):
        """Whether ``sharded_messages`` applies: the fast path with lattice kernels only."""
        return self.implementation == "fast" and len(self._lattice_terms) == len(self.terms)

    def split_points(self, field):
        """[B, H, W, C] (or [P, C]) -> list of [P_s, C] point shards (the layout of ``sharded_messages``)."""
        points = tf.reshape(field, [-1, tf.shape(field)[-1]])
        return tf.split(points, self.shard_sizes, axis=0) if self.shards > 1 else [points]

    def _transform_table(self, table, transforms):
        """Apply each lattice's transform to its row block (numbers: one row-scale multiply)."""
        if all(isinstance(t, Number) for t in transforms):
            weights = tf.constant([float(t) for t in transforms] + [0.0], table.dtype)
            return table * tf.gather(weights, self.row_blocks)[:, None]
        tables = tf.split(table, self.vertex_counts + [tf.constant(1, tf.int32)], axis=0)
        tables = [_apply(t, x) for t, x in zip(transforms, tables[:-1])] + [tables[-1]]
        return tf.concat(tables, axis=0)

    def sharded_messages(self, shards, transforms):
        """Lattice messages for point shards [P_s, C] (see ``split_points``), as shards (fast path).

        sparse_dense_matmul runs on one thread; the shards' matmuls run concurrently.
        """
        splat_matrices, slice_matrices = self.splat_matrices, self.slice_matrices
        dtype = shards[0].dtype
        if dtype != tf.float32:
            splat_matrices = [_cast_sparse(m, dtype) for m in splat_matrices]
            slice_matrices = [_cast_sparse(m, dtype) for m in slice_matrices]
        table = tf.add_n([tf.sparse.sparse_dense_matmul(m, p, adjoint_a=True)
                          for m, p in zip(splat_matrices, shards)])  # [sum V + 1, C]
        table = self._transform_table(self._blur(table), transforms)
        return [tf.sparse.sparse_dense_matmul(m, table) for m in slice_matrices]

    def entry_messages(self, points, transforms, slice_weights=None):
        """Portable lattice messages [P, C] -> [P, C]: splat by segment sum, blur, slice by gather.

        ``slice_weights``: the slice weights with numeric transforms already folded in (then
        ``transforms`` are not applied again); see ``folded_slice_weights``.
        """
        dtype = points.dtype
        # reshape, not [:, :, None] (a STRIDED_SLICE copy in TFLite)
        splat_weights = tf.expand_dims(tf.cast(self.splat_weights, dtype), -1)
        # [E, P] segment ids on [E, P, C] contributions: no reshape to [E P, C] (a copy in TFLite).
        contributions = splat_weights * tf.expand_dims(points, 0)
        table = self._doubled_blur(tf.math.unsorted_segment_sum(contributions, self.entry_rows, self.table_rows))
        if slice_weights is None:
            table = self._transform_table(table, transforms)
            slice_weights = self.slice_weights
        gathered = tf.gather(table, self.entry_rows)  # [E, P, C]
        return tf.reduce_sum(gathered * tf.expand_dims(tf.cast(slice_weights, dtype), -1), axis=0)

    def folded_slice_weights(self, transforms):
        """Slice weights times each lattice's numeric transform, or None if any transform is a map."""
        if not all(isinstance(t, Number) for t in transforms):
            return None
        scales = np.array([float(t) for t in transforms], np.float32)[self.entry_lattice]
        return self.slice_weights * scales[:, None]

    def _lattice_messages(self, points, transforms):
        """[P, C] -> [P, C]: sum over lattice kernels of transform_k(n_k K_k(n_k points))."""
        if self.implementation == "fast":
            sliced = self.sharded_messages(self.split_points(points), transforms)
            return tf.concat(sliced, axis=0) if len(sliced) > 1 else sliced[0]
        return self.entry_messages(points, transforms)

    def __call__(self, q, transforms):
        """``sum_k transforms[k](filter_k(q))`` for q [B, H, W, C].

        ``transforms``: one per kernel, a number (a scale) or a map linear on the label axis.
        """
        if len(transforms) != len(self.terms):
            raise ValueError(f"{len(transforms)} transforms for {len(self.terms)} kernels")
        outputs = []
        lattice_transforms = [t for term, t in zip(self.terms, transforms) if term[0] == "lattice"]
        if lattice_transforms:
            points = tf.reshape(q, [-1, tf.shape(q)[-1]])
            outputs.append(tf.reshape(self._lattice_messages(points, lattice_transforms), tf.shape(q)))
        for term, transform in zip(self.terms, transforms):
            if term[0] == "convolution":
                outputs.append(_apply(transform, term[1](q)))
        return tf.add_n(outputs) if len(outputs) > 1 else outputs[0]


def _apply(transform, values):
    return values * tf.cast(transform, values.dtype) if isinstance(transform, Number) else transform(values)


def _cast_sparse(matrix, dtype):
    return tf.SparseTensor(matrix.indices, tf.cast(matrix.values, dtype), matrix.dense_shape)


def message_transform(compat, num_labels=None):
    """A pairwise term's contribution ``-compat(m)`` to the scores, in pydensecrf's conventions.

    Returns a number (a scale) for Potts, else a callable on [..., C].

    ``m`` is the filtered field [..., C]. A number w is Potts, compat(m) = -w m, so the
    contribution is ``+w m``; a 1-D array v gives ``-v m`` (diagonal, no minus in compat); a
    2-D matrix M gives ``-m @ (0.5 (M + M^T))`` (symmetrised, no minus in compat).
    """
    if isinstance(compat, Number):
        return float(compat)  # a scale, which PairwiseFilters folds into its vertex tables
    matrix = np.asarray(compat, dtype=np.float32)
    if matrix.ndim == 1:
        if num_labels is not None and matrix.shape[0] != num_labels:
            raise ValueError(f"compat vector has shape {matrix.shape}; expected ({num_labels},)")
        return lambda message: message * tf.constant(-matrix, message.dtype)
    if matrix.ndim == 2:
        if matrix.shape[0] != matrix.shape[1] or (num_labels is not None and matrix.shape[0] != num_labels):
            raise ValueError(f"compat matrix has shape {matrix.shape}; expected ({num_labels}, {num_labels})")
        symmetric = -0.5 * (matrix + matrix.T)
        return lambda message: tf.matmul(message, tf.constant(symmetric, message.dtype))
    raise ValueError(f"compat must be a number, a 1-D or a 2-D array; got shape {matrix.shape}")


def mean_field_inference(unary, pairwise, iterations):
    """Mean-field iterations; returns the last pre-softmax scores ``-U + pairwise(Q)``.

    ``unary`` [B, H, W, C]; ``pairwise``: Q [B, H, W, C] -> the summed contributions
    ``-sum_k compat_k(filter_k(Q))``, or a ``(PairwiseFilters, transforms)`` pair. All terms
    read the same Q (synchronous update), as in pydensecrf's ``inference``.
    """
    if isinstance(pairwise, tuple):
        filters, transforms = pairwise
        if filters.point_sharded:
            return _sharded_mean_field(unary, filters, transforms, iterations)
        if filters.implementation == "portable":
            return _point_mean_field(unary, filters, transforms, iterations)
        pairwise = lambda q: filters(q, transforms)  # noqa: E731
    scores = -unary
    for _ in range(int(iterations)):
        scores = -unary + pairwise(tf.nn.softmax(scores, axis=-1))
    return scores


def _point_mean_field(unary, filters, transforms, iterations):
    """``mean_field_inference`` with the state kept as [P, C] points (portable path): no per-iteration reshapes
    for the lattice terms, and numeric (Potts) transforms folded into the slice weights once."""
    if len(transforms) != len(filters.terms):
        raise ValueError(f"{len(transforms)} transforms for {len(filters.terms)} kernels")
    shape = tf.shape(unary)
    negative_unary = -tf.reshape(unary, [-1, shape[-1]])
    lattice_transforms = [t for term, t in zip(filters.terms, transforms) if term[0] == "lattice"]
    convolutions = [(term[1], t) for term, t in zip(filters.terms, transforms) if term[0] == "convolution"]
    slice_weights = filters.folded_slice_weights(lattice_transforms) if lattice_transforms else None
    scores = negative_unary
    for _ in range(int(iterations)):
        q = tf.nn.softmax(scores, axis=-1)
        messages = []
        if lattice_transforms:
            messages.append(filters.entry_messages(q, lattice_transforms, slice_weights))
        for convolution, transform in convolutions:
            field = tf.reshape(q, shape)
            field.set_shape(unary.shape)  # a static label count for the depthwise convolutions (TFLite)
            filtered = convolution(field)
            messages.append(tf.reshape(_apply(transform, filtered), tf.shape(q)))
        scores = tf.add_n([negative_unary] + messages)
    return tf.reshape(scores, shape)


def _sharded_mean_field(unary, filters, transforms, iterations):
    """``mean_field_inference`` on point shards kept apart for all iterations (no per-iteration split/concat)."""
    negative_unary = [-u for u in filters.split_points(unary)]
    scores = negative_unary
    for _ in range(int(iterations)):
        messages = filters.sharded_messages([tf.nn.softmax(s, axis=-1) for s in scores], transforms)
        scores = [u + m for u, m in zip(negative_unary, messages)]
    scores = tf.concat(scores, axis=0) if len(scores) > 1 else scores[0]
    return tf.reshape(scores, tf.shape(unary))


def _check_inputs(image, unary):
    image = tf.convert_to_tensor(image)
    unary = tf.convert_to_tensor(unary)
    if image.dtype != tf.uint8 and not image.dtype.is_floating:
        raise ValueError(f"image must be RGB [B, H, W, 3] or [H, W, 3], uint8 or float in [0, 255]; "
                         f"got dtype {image.dtype.name}")
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

    ``image``: RGB [B, H, W, 3] or [H, W, 3], uint8 or float in [0, 255] (as
    ``tfseg.layers.DenseCRF``); ``unary``: negative log-probabilities
    [B, H, W, C] or [H, W, C]. The parameters mean what they mean in pydensecrf's
    ``addPairwiseGaussian(sxy, compat)`` and ``addPairwiseBilateral(sxy, srgb, rgbim, compat)``
    (compat: number = Potts, 1-D = diagonal, 2-D = matrix, pydensecrf's signs; the layer calls
    its Potts weights by the same names); a compat of 0 (or None) drops that term. The widths
    ``*_sxy`` and ``bilateral_srgb`` must be positive. Returns Q, the marginals, with the unary's
    shape and dtype.

    ``implementation``: "fast" (sparse matmul) or "portable" (segment_sum/gather, TFLite
    builtins). ``gaussian_filter``: "convolution" (exact separable Gaussian), "lattice" (as
    pydensecrf), "grid" (``GridGaussianFilter``: strided bilinear splat, blur, bilinear slice) or
    "auto" (the lattice; "grid" is the faster choice for a fixed-size TFLite export).

    Called eagerly with number (or None) compats, it runs as a compiled tf.function (one trace
    per parameter set, shapes generalised); inside a graph it adds its ops to that graph.
    """
    image, unary = _check_inputs(image, unary)
    check_options(implementation, gaussian_filter, iterations=iterations)
    check_widths(gaussian_sxy=gaussian_sxy, bilateral_sxy=bilateral_sxy, bilateral_srgb=bilateral_srgb)
    options = dict(gaussian_sxy=float(gaussian_sxy), gaussian_compat=gaussian_compat,
                   bilateral_sxy=float(bilateral_sxy), bilateral_srgb=float(bilateral_srgb),
                   bilateral_compat=bilateral_compat,
                   iterations=int(iterations), implementation=implementation, gaussian_filter=gaussian_filter)
    single = image.shape.rank == 3
    if single:
        image, unary = image[None], unary[None]
    if tf.executing_eagerly() and all(c is None or isinstance(c, Number) for c in (gaussian_compat, bilateral_compat)):
        q = _compiled_dense_crf(image, unary, **options)
    else:
        q = _dense_crf_graph(image, unary, **options)
    return q[0] if single else q


def _dense_crf_graph(image, unary, *, gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb,
                     bilateral_compat, iterations, implementation, gaussian_filter):
    """dense_crf on checked rank-4 inputs."""
    num_labels = unary.shape[-1]
    kernels, transforms = [], []
    for compat, kernel in [(gaussian_compat, (gaussian_sxy, None)),
                           (bilateral_compat, (bilateral_sxy, bilateral_srgb))]:
        if compat is None or _is_zero(compat):
            continue
        kernels.append(kernel)
        transforms.append(message_transform(compat, num_labels))
    if not kernels or int(iterations) == 0:
        q = tf.nn.softmax(-unary, axis=-1)
    else:
        filters = PairwiseFilters(image, kernels, implementation, gaussian_filter)
        q = tf.nn.softmax(mean_field_inference(unary, (filters, transforms), iterations), axis=-1)
    return q


_compiled_dense_crf = tf.function(_dense_crf_graph, reduce_retracing=True)


def _is_zero(compat):
    return isinstance(compat, Number) and float(compat) == 0.0
