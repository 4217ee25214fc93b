"""Permutohedral lattice filtering (Adams, Baek & Davis, Eurographics 2010) in standard TF ops.

This reproduces, step for step, the lattice in Krähenbühl & Koltun's dense-CRF C++ code
(``permutohedral.cpp``, used by pydensecrf): elevation onto the hyperplane orthogonal to
(1, ..., 1), the enclosing simplex found by rounding and ranking, barycentric splatting,
a [0.5, 1, 0.5] blur along the d + 1 lattice axes and slicing with the magic
``alpha = 1 / (1 + 2**-d)``.

Hashing without a hash table (only TFLite builtins): every lattice vertex key (its first d
integer coordinates, plus the image index of a batch) is flattened into one int64 using
per-dimension ranges padded by ``d + 1`` on both sides, so a neighbour key is the vertex key
plus a constant offset and can never collide with a real vertex of another place. One
``tf.unique`` numbers the vertices; a second one over the vertex keys followed by all their
neighbour keys finds the neighbours: an absent neighbour gets an id >= the vertex count and is
redirected to a zero row.

The lattice structure (which vertices each pixel touches, with which weights, and the blur
neighbours) depends on the features only; it is built once per image and reused by every
mean-field iteration and every label.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

IMPLEMENTATIONS = ("fast", "portable")


def _scale_factors(dimension):
    """Per-feature scale so the lattice blur approximates a unit-variance Gaussian (Adams et al. 2010)."""
    d = dimension
    inv_std_dev = np.sqrt(2.0 / 3.0) * (d + 1)
    return [np.float32(inv_std_dev / np.sqrt((i + 1) * (i + 2))) for i in range(d)]


def _canonical_offsets(dimension):
    """``canonical[r][k]``: offset of the remainder-r vertex of the canonical simplex at rank k."""
    d = dimension
    return np.array(
        [[r if k <= d - r else r - (d + 1) for k in range(d + 1)] for r in range(d + 1)], dtype=np.int32
    )


def _enclosing_simplex(features, dimension):
    """Remainder-0 vertex, ranks and barycentric weights of every point, as in permutohedral.cpp.

    Returns ``rem0`` int32 [P, d+1], ``rank`` int32 [P, d+1] and ``barycentric`` float32 [P, d+1].
    """
    d = dimension
    scale = _scale_factors(d)
    columns = [features[:, i] * scale[i] for i in range(d)]
    # Elevate onto the hyperplane sum(x) = 0 in R^{d+1}, in the C++ code's accumulation order.
    elevated = [None] * (d + 1)
    running_sum = tf.zeros_like(columns[0])
    for j in range(d, 0, -1):
        cf = columns[j - 1]
        elevated[j] = running_sum - float(j) * cf
        running_sum = running_sum + cf
    elevated[0] = running_sum
    elevated = tf.stack(elevated, axis=1)  # [P, d+1]

    # Nearest remainder-0 lattice point: round each coordinate to a multiple of d+1 (ties go down).
    quotient = elevated * np.float32(1.0 / (d + 1))
    up = tf.math.ceil(quotient) * float(d + 1)
    down = tf.math.floor(quotient) * float(d + 1)
    rem0 = tf.where(up - elevated < elevated - down, up, down)
    rem0 = tf.cast(rem0, tf.int32)
    coordinate_sum = tf.reduce_sum(rem0 // (d + 1), axis=1, keepdims=True)

    # Rank of every coordinate's residual; ties are broken exactly as the C++ double loop does.
    residual = elevated - tf.cast(rem0, elevated.dtype)
    less = tf.cast(residual[:, :, None] < residual[:, None, :], tf.int32)  # less[p, i, j] = r_i < r_j
    upper = np.triu(np.ones((d + 1, d + 1), np.int32), 1)  # j > i
    lower = upper.T  # j < i
    rank = tf.reduce_sum(less * upper + (1 - tf.transpose(less, [0, 2, 1])) * lower, axis=2)

    # Bring points off the plane back onto it.
    rank = rank + coordinate_sum
    too_low = rank < 0
    too_high = rank > d
    shift = tf.where(too_low, d + 1, tf.where(too_high, -(d + 1), 0))
    rank = rank + shift
    rem0 = rem0 + shift

    # Barycentric coordinates (p. 10 of Adams et al. 2010).
    residual = (elevated - tf.cast(rem0, elevated.dtype)) * np.float32(1.0 / (d + 1))
    add_at = tf.one_hot(d - rank, d + 2, dtype=residual.dtype)
    sub_at = tf.one_hot(d - rank + 1, d + 2, dtype=residual.dtype)
    barycentric = tf.einsum("pi,pik->pk", residual, add_at - sub_at)  # [P, d+2]
    wrapped = barycentric[:, 0] + 1.0 + barycentric[:, d + 1]
    barycentric = tf.concat([wrapped[:, None], barycentric[:, 1 : d + 1]], axis=1)
    return rem0, rank, barycentric


class PermutohedralLattice:
    """The lattice of one feature set (all images of a batch at once), built once, applied many times.

    ``features``: float32 [P, d] (already divided by the kernel's standard deviations).
    ``image_index``: optional int32 [P], the batch image each point belongs to; points of
    different images never share a vertex, so one lattice filters a whole batch independently.
    """

    def __init__(self, features, image_index=None):
        features = tf.convert_to_tensor(features, tf.float32)
        if features.shape.rank != 2 or features.shape[-1] is None:
            raise ValueError(f"features must be [points, d] with a static d; got shape {features.shape}")
        d = int(features.shape[-1])
        self.dimension = d
        self.alpha = 1.0 / (1.0 + 2.0 ** (-d))
        rem0, rank, barycentric = _enclosing_simplex(features, d)
        self.barycentric = barycentric  # [P, d+1]; column r weighs the remainder-r vertex

        # Keys of the d+1 enclosing vertices: [P, d+1 (remainder r), d (coordinate)].
        canonical = tf.constant(_canonical_offsets(d))  # [r, rank]
        offsets = tf.gather(canonical, rank[:, :d], axis=1)  # [r, P, d]
        keys = rem0[None, :, :d] + offsets
        keys = tf.transpose(keys, [1, 0, 2])  # [P, r, d]

        # Flatten into int64 with padded ranges so that +-1 / +d neighbour steps stay in range.
        low = tf.reduce_min(keys, axis=[0, 1]) - (d + 1)
        high = tf.reduce_max(keys, axis=[0, 1]) + (d + 1)
        extent = tf.cast(high - low + 1, tf.int64)
        strides = [tf.constant(1, tf.int64)]
        for k in range(d):  # d is static: no cumprod (not a TFLite builtin)
            strides.append(strides[-1] * extent[k])
        stride_vector = tf.stack(strides[:d])
        flat = tf.reduce_sum(tf.cast(keys - low, tf.int64) * stride_vector, axis=2)  # [P, d+1]
        if image_index is not None:
            flat = flat + tf.cast(image_index, tf.int64)[:, None] * strides[d]

        vertex_keys, vertex_of = tf.unique(tf.reshape(flat, [-1]), out_idx=tf.int32)
        self.num_vertices = tf.shape(vertex_keys)[0]
        self.vertex_index = tf.reshape(vertex_of, [-1, d + 1])  # [P, d+1]

        # Neighbours along axis j: key - 1 everywhere with key[j] + d (its mirror is "+").
        total_stride = tf.add_n(strides[:d])
        steps = [(d + 1) * strides[j] - total_stride for j in range(d)] + [-total_stride]
        candidates = [vertex_keys]
        for step in steps:
            candidates += [vertex_keys + step, vertex_keys - step]
        _, candidate_id = tf.unique(tf.concat(candidates, axis=0), out_idx=tf.int32)
        # Vertex keys are distinct and come first, so they keep ids 0..V-1; anything else is absent.
        absent = self.num_vertices
        neighbour_id = tf.where(candidate_id < absent, candidate_id, absent)
        neighbour_id = tf.reshape(neighbour_id[absent:], [2 * (d + 1), -1])
        self.blur_neighbours = [(neighbour_id[2 * j], neighbour_id[2 * j + 1]) for j in range(d + 1)]
        self._splat_matrix = None

    # --- the three stages -----------------------------------------------------------------------

    def splat_matrix(self):
        """Sparse [P, V] matrix of barycentric weights (built lazily, once)."""
        if self._splat_matrix is None:
            points = tf.shape(self.vertex_index)[0]
            d1 = self.dimension + 1
            rows = tf.repeat(tf.range(points, dtype=tf.int64), d1)
            cols = tf.cast(tf.reshape(self.vertex_index, [-1]), tf.int64)
            self._splat_matrix = tf.SparseTensor(
                indices=tf.stack([rows, cols], axis=1),
                values=tf.reshape(self.barycentric, [-1]),
                dense_shape=tf.stack([tf.cast(points, tf.int64), tf.cast(self.num_vertices, tf.int64)]),
            )
        return self._splat_matrix

    def splat(self, values, implementation="portable"):
        """[P, C] point values -> [V, C] vertex values."""
        if implementation == "fast":
            matrix = self.splat_matrix()
            return tf.sparse.sparse_dense_matmul(
                tf.sparse.SparseTensor(matrix.indices, tf.cast(matrix.values, values.dtype), matrix.dense_shape),
                values,
                adjoint_a=True,
            )
        weighted = tf.cast(self.barycentric, values.dtype)[:, :, None] * values[:, None, :]  # [P, d+1, C]
        return tf.math.unsorted_segment_sum(
            tf.reshape(weighted, [-1, tf.shape(values)[-1]]),
            tf.reshape(self.vertex_index, [-1]),
            self.num_vertices,
        )

    def blur(self, vertex_values, reverse=False):
        """[0.5, 1, 0.5] blur along each of the d+1 lattice axes; absent neighbours count as zero."""
        zero_row = tf.zeros_like(vertex_values[:1])
        order = range(self.dimension, -1, -1) if reverse else range(self.dimension + 1)
        for j in order:
            minus, plus = self.blur_neighbours[j]
            padded = tf.concat([vertex_values, zero_row], axis=0)
            vertex_values = vertex_values + 0.5 * (tf.gather(padded, minus) + tf.gather(padded, plus))
        return vertex_values

    def slice(self, vertex_values, implementation="portable"):
        """[V, C] vertex values -> [P, C] point values (barycentric interpolation, times alpha)."""
        if implementation == "fast":
            matrix = self.splat_matrix()
            out = tf.sparse.sparse_dense_matmul(
                tf.sparse.SparseTensor(matrix.indices, tf.cast(matrix.values, vertex_values.dtype), matrix.dense_shape),
                vertex_values,
            )
        else:
            gathered = tf.gather(vertex_values, self.vertex_index)  # [P, d+1, C]
            out = tf.reduce_sum(gathered * tf.cast(self.barycentric, vertex_values.dtype)[:, :, None], axis=1)
        return out * tf.cast(self.alpha, out.dtype)

    def filter(self, values, implementation="portable", reverse=False):
        """Approximate Gaussian filtering ``out_i = sum_j exp(-|f_i - f_j|^2 / 2) values_j`` of [P, C] values."""
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation={implementation!r}; valid: {list(IMPLEMENTATIONS)}")
        vertex_values = self.splat(values, implementation)
        vertex_values = self.blur(vertex_values, reverse=reverse)
        return self.slice(vertex_values, implementation)
