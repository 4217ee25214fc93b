"""Permutohedral lattice filtering (Adams, Baek & Davis, Eurographics 2010) in standard TF ops.

This reproduces, step for step, the lattice in Krähenbühl & Koltun's dense-CRF C++ code
(``permutohedral.cpp``, used by pydensecrf): elevation onto the hyperplane orthogonal to
(1, ..., 1), the enclosing simplex found by rounding and ranking, barycentric splatting,
a [0.5, 1, 0.5] blur along the d + 1 lattice axes and slicing with the magic
``alpha = 1 / (1 + 2**-d)``.

Hashing with TFLite builtins only: every lattice vertex key (its first d integer coordinates,
plus the image index of a batch) is flattened into one int64 using per-dimension ranges padded
by ``2d`` on both sides, so a neighbour key is the vertex key plus a constant offset and can
never collide with a real vertex of another place. Points are first grouped by enclosing
simplex (the distinct (remainder-0 key, rank code) pairs), vertex keys are computed once per
simplex, one dedupe numbers the vertices, and lookups of the vertex keys plus each axis step find
the blur neighbours (an absent one is redirected to a zero row). Dedupe and lookup are
``tf.unique`` (``hashing="unique"``, fast in TensorFlow) or ``tfseg.crf.hashing.HashTable``
(``hashing="table"``: the same numbering, without TFLite's slow std::map-based UNIQUE).
Limit: the product of the padded key ranges times the batch size must stay below 2**62 (far
beyond photographs with the usual parameters; e.g. 1000x1000, sxy = srgb = 1 uses ~4e17), and
(d+1) x points below 2**31; beyond that the lattice raises (TFLite, which drops assertions:
NaN output).

The lattice structure (which vertices each pixel touches, with which weights, and the blur
neighbours) depends on the features only; it is built once per image and reused by every
mean-field iteration and every label.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfseg.crf.hashing import HashTable

IMPLEMENTATIONS = ("fast", "portable")
# How lattice keys are deduplicated: tf.unique (fast in TensorFlow) or HashTable (TFLite builtins
# without TFLite's std::map-based UNIQUE on long inputs).
HASHINGS = ("unique", "table")
# Flat keys and their padded ranges must stay below 2**63; entry counts are int32.
MAX_KEY_SPACE = 2.0**62
MAX_ENTRIES = 2**31 - 1


def _scale_factors(dimension):
    """Per-feature scale so the lattice blur approximates a unit-variance Gaussian (Adams et al. 2010).

    Rounded exactly as the C++ code does (a float ``inv_std_dev`` times a double), since a
    one-ulp difference moves points that sit on simplex boundaries.
    """
    d = dimension
    inv_std_dev = np.float32(np.sqrt(2.0 / 3.0) * (d + 1))
    return [np.float32(1.0 / np.sqrt(float((i + 2) * (i + 1))) * np.float64(inv_std_dev)) for i in range(d)]


def _enclosing_simplex(columns, dimension):
    """Barycentric weights and vertex keys of every point's enclosing simplex, as permutohedral.cpp.

    ``columns``: d float32 [P] feature vectors. Work is laid out coordinate-major ([d+1, P]),
    which TF handles far faster than [P, d+1] rows or [P, d+1, d+1] broadcasts.
    Returns ``barycentric`` float32 [d+1, P] (row r weighs the remainder-r vertex), ``rem0``
    int64 [d, P] (the remainder-0 vertex, first d coordinates) and ``rank`` int64 [d, P] (the
    rank of those coordinates), from which the vertex keys follow.
    """
    d = dimension
    scale = _scale_factors(d)
    scaled = [columns[i] * scale[i] for i in range(d)]
    # Elevate onto the hyperplane sum(x) = 0 in R^{d+1}, in the C++ code's accumulation order.
    elevated = [None] * (d + 1)
    running_sum = tf.zeros_like(scaled[0])
    for j in range(d, 0, -1):
        elevated[j] = running_sum - float(j) * scaled[j - 1]
        running_sum = running_sum + scaled[j - 1]
    elevated[0] = running_sum
    elevated = tf.stack(elevated, axis=0)  # [d+1, P]

    # Nearest remainder-0 lattice point: round each coordinate to a multiple of d+1 (ties go down).
    down_factor = np.float32(1.0 / (d + 1))
    quotient = elevated * down_factor
    up, down = tf.math.ceil(quotient), tf.math.floor(quotient)
    quotient = tf.where(up * float(d + 1) - elevated < elevated - down * float(d + 1), up, down)
    rem0 = quotient * float(d + 1)
    coordinate_sum = tf.reduce_sum(quotient, axis=0)

    # Rank of every coordinate's residual, ties broken as the C++ double loop does
    # (for i < j: rank[i]++ if r_i < r_j, else rank[j]++), then the coordinate sum added.
    residual = tf.unstack(elevated - rem0, axis=0)
    rank = [coordinate_sum] * (d + 1)
    for i in range(d):
        for j in range(i + 1, d + 1):
            smaller = tf.cast(residual[i] < residual[j], tf.float32)
            rank[i] = rank[i] + smaller
            rank[j] = rank[j] + (1.0 - smaller)
    rank = tf.stack(rank, axis=0)  # [d+1, P], integer-valued

    # Bring points off the plane back onto it (one wrap suffices: |sum| <= (d+1)/2).
    shift = tf.where(rank < 0.0, float(d + 1), tf.where(rank > float(d), -float(d + 1), 0.0))
    rank = rank + shift
    rem0 = rem0 + shift

    # Barycentric coordinates (p. 10 of Adams et al. 2010): with s_m the scaled residual of the
    # coordinate of rank m, b[k] = s_{d-k} - s_{d-k+1} for k >= 1 and b[0] = 1 + s_d - s_0.
    # Rank m holds the m-th largest residual, so s is the residuals sorted in descending order
    # (tied residuals are equal, so their order does not matter here): a sorting network.
    by_rank = _sort_descending(tf.unstack((elevated - rem0) * np.float32(1.0 / (d + 1)), axis=0))
    barycentric = [1.0 + by_rank[d] - by_rank[0]] + [by_rank[d - k] - by_rank[d - k + 1] for k in range(1, d + 1)]
    return tf.stack(barycentric, axis=0), tf.cast(rem0[:d], tf.int64), tf.cast(rank[:d], tf.int64)


def _sort_descending(values):
    """Sort a short list of equal-shape tensors elementwise, largest first (odd-even merge sort network)."""
    values = list(values)
    n = len(values)
    for i, j in _sorting_network(n):
        high, low = tf.maximum(values[i], values[j]), tf.minimum(values[i], values[j])
        values[i], values[j] = high, low
    return values


def _sorting_network(n):
    """Compare-exchange pairs (i < j) of Batcher's odd-even merge sort for n inputs."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


class _UniqueTable:
    """``HashTable``'s interface on ``tf.unique`` (numbering in first-seen order)."""

    def __init__(self, keys, tags=None, tag_bound=None):
        self._all_count = tf.shape(keys)[0]
        self.keys, self.ids = tf.unique(keys, out_idx=tf.int32)
        if tags is not None:  # number the distinct (key, tag) pairs
            self.keys, self.ids = tf.unique(tf.cast(self.ids, tf.int64) * tag_bound + tags, out_idx=tf.int32)
        self.count = tf.shape(self.keys)[0]

    @property
    def representatives(self):
        return tf.math.unsorted_segment_max(tf.range(self._all_count), self.ids, self.count)

    def lookup(self, queries):
        # The distinct keys come first, so they keep their numbers; any other id is a new key.
        _, ids = tf.unique(tf.concat([self.keys, queries], axis=0), out_idx=tf.int32)
        ids = ids[self.count:]
        return tf.where(ids < self.count, ids, -1)


def _check_key_space(extent, images, num_points, dimension):
    """Assert the flat keys fit in int64 and the entries in int32; returns the condition (bool scalar).

    The key space is the product of the padded per-coordinate ranges times the number of images,
    computed in float32 (exact enough for a bound with a factor-2 margin).
    """
    key_space = tf.reduce_prod(tf.cast(extent, tf.float32))
    if images is not None:
        key_space = key_space * images
    entries = tf.cast(num_points, tf.float32) * (dimension + 1)
    valid = tf.logical_and(key_space < MAX_KEY_SPACE, entries <= MAX_ENTRIES)
    tf.debugging.Assert(valid, [
        f"dense CRF lattice too large for int64 keys / int32 indices (batch x image size with these "
        f"kernel widths): key space must be < 2**62 and {dimension + 1} x points <= 2**31 - 1; got key space",
        key_space, "and points", num_points])
    return valid


class PermutohedralLattice:
    """The lattice of one feature set (all images of a batch at once), built once, applied many times.

    ``features``: float32 [P, d], or a list of d float32 [P] columns (already divided by the
    kernel's standard deviations). ``image_index``: optional int32 [P], the batch image each
    point belongs to; points of different images never share a vertex, so one lattice filters
    a whole batch independently. ``hashing``: "unique" (tf.unique) or "table" (``HashTable``,
    for TFLite); both give the same lattice, numbering included.
    """

    def __init__(self, features, image_index=None, hashing="unique"):
        if hashing not in HASHINGS:
            raise ValueError(f"hashing={hashing!r}; valid: {list(HASHINGS)}")
        if isinstance(features, (list, tuple)):
            columns = [tf.convert_to_tensor(c, tf.float32) for c in features]
        else:
            features = tf.convert_to_tensor(features, tf.float32)
            if features.shape.rank != 2 or features.shape[-1] is None:
                raise ValueError(f"features must be [points, d] with a static d; got shape {features.shape}")
            columns = tf.unstack(features, axis=1)
        d = len(columns)
        self.dimension = d
        self.alpha = 1.0 / (1.0 + 2.0 ** (-d))
        barycentric, rem0, rank = _enclosing_simplex(columns, d)  # [d+1, P], [d, P], [d, P]
        self.num_points = tf.shape(barycentric)[1]
        table = HashTable if hashing == "table" else _UniqueTable

        # Vertex r has coordinates key_r[j] = rem0[j] + r - (d+1) [rank[j] > d - r] (j < d; the last
        # one is implied by the zero sum). Flatten them into int64 with per-coordinate ranges padded
        # by 2d on both sides (vertex offsets and neighbour steps stay within +-2d of rem0), so
        # flattening is linear: a step in coordinate j is a step of strides[j] in the flat key.
        low = tf.reduce_min(rem0, axis=1) - 2 * d  # [d]
        extent = tf.reduce_max(rem0, axis=1) + 2 * d - low + 1
        strides = [tf.constant(1, tf.int64)]
        for j in range(d):  # d is static: no cumprod (not a TFLite builtin)
            strides.append(strides[-1] * extent[j])
        images = None if image_index is None else tf.cast(tf.reduce_max(image_index) + 1, tf.float32)
        valid = _check_key_space(extent, images, self.num_points, d)
        # Runtimes that drop assertions (TFLite) get NaN weights, hence NaN outputs, not wrong numbers.
        self.barycentric = barycentric * tf.where(valid, 1.0, float("nan"))
        stride_vector = tf.stack(strides[:d])
        base = tf.reduce_sum((rem0 - low[:, None]) * stride_vector[:, None], axis=0)  # [P]
        if image_index is not None:
            base = base + tf.cast(image_index, tf.int64) * strides[d]
        # Points in the same simplex (same remainder-0 vertex, same ranks) share their d+1 vertices:
        # number the distinct (remainder-0 key, rank code) pairs first, compute vertex keys once
        # per simplex (from one representative point: int64 division is not a TFLite builtin),
        # then one dedupe over those.
        radix = d + 1
        rank_code = tf.add_n([rank[j] * radix**j for j in range(d)])  # < radix**d
        simplices = table(base, tags=rank_code, tag_bound=radix**d)
        simplex_id = simplices.ids
        self.num_simplices = simplices.count
        representative = simplices.representatives
        simplex_base = tf.gather(base, representative)  # [S]
        simplex_rank = tf.gather(rank, representative, axis=1)  # [d, S]
        # Vertex r of a simplex: key_r[j] = rem0[j] + r - (d+1) [rank[j] > d - r] for j < d, so its
        # flat key is base + r * sum(strides) - (d+1) * (sum of strides of coordinates with rank > d - r).
        threshold = tf.constant(np.arange(d, -1, -1), tf.int64)[None, None, :]  # d - r
        above = tf.cast(simplex_rank[:, :, None] > threshold, tf.int64)  # [d, S, d+1]
        above = tf.reduce_sum(above * stride_vector[:, None, None], axis=0)  # [S, d+1]
        total_stride = tf.add_n(strides[:d])
        offsets = tf.constant(np.arange(d + 1), tf.int64)[None, :] * total_stride
        flat = simplex_base[:, None] + offsets - (d + 1) * above  # [S, d+1]

        vertices = table(tf.reshape(flat, [-1]))
        vertex_keys = vertices.keys
        # HashTable only: the vertex numbers in slot order (key mod a prime: blur neighbours, a constant
        # key step away, sit a nearly constant distance apart in it). None for tf.unique.
        self.slot_order = getattr(vertices, "slot_order", None)
        self.num_vertices = vertices.count
        vertex_of = tf.reshape(vertices.ids, [-1, d + 1])  # [S, d+1]
        self.vertex_index = tf.transpose(tf.gather(vertex_of, simplex_id))  # [d+1, P]

        # Neighbours along axis j: key - 1 everywhere with key[j] + d (its mirror is "+"). An absent
        # neighbour is sent to row V of the padded value table, which stays zero.
        # Only the "+" neighbours are looked up: v' = v + step exactly when v = v' - step, so the
        # "-" neighbours are the inverse map (a segment max over the found pairs).
        steps = [(d + 1) * strides[j] - total_stride for j in range(d)] + [-total_stride]
        count = self.num_vertices
        plus = vertices.lookup(tf.concat([vertex_keys + step for step in steps], axis=0))
        plus = tf.reshape(tf.where(plus >= 0, plus, count), [d + 1, -1])  # absent: row V
        self.blur_neighbours = []
        for j in range(d + 1):
            minus = tf.math.unsorted_segment_max(tf.range(count), plus[j], count + 1)[:count]
            self.blur_neighbours.append((tf.where(minus >= 0, minus, count), plus[j]))
        self._sparse_indices = None

    # --- the three stages -----------------------------------------------------------------------

    def sparse_indices(self):
        """int64 [(d+1) P, 2] (point, vertex) positions of the barycentric weights (built once)."""
        if self._sparse_indices is None:
            rows = tf.tile(tf.range(self.num_points, dtype=tf.int64)[None, :], [self.dimension + 1, 1])
            cols = tf.cast(self.vertex_index, tf.int64)
            self._sparse_indices = tf.transpose(tf.stack([tf.reshape(rows, [-1]), tf.reshape(cols, [-1])], axis=0))
        return self._sparse_indices

    def sparse_values(self, point_scale=None):
        """float32 [(d+1) P] barycentric weights, each point's optionally times ``point_scale[p]``."""
        weights = self.barycentric
        if point_scale is not None:
            weights = weights * tf.reshape(tf.cast(point_scale, weights.dtype), [1, -1])
        return tf.reshape(weights, [-1])

    def sparse_matrix(self, point_scale=None):
        """Sparse [P, V] matrix of barycentric weights, each row optionally times ``point_scale[p]``.

        Splatting is ``matrix^T @ values`` and slicing ``alpha * matrix @ vertex_values``.
        """
        dense_shape = tf.stack([tf.cast(self.num_points, tf.int64), tf.cast(self.num_vertices, tf.int64)])
        return tf.SparseTensor(self.sparse_indices(), self.sparse_values(point_scale), dense_shape)

    def splat(self, values, implementation="portable", matrix=None):
        """[P, C] point values -> [V, C] vertex values (``matrix``: a cached ``sparse_matrix()``)."""
        if implementation == "fast":
            matrix = self.sparse_matrix() if matrix is None else matrix
            if matrix.dtype != values.dtype:
                matrix = tf.SparseTensor(matrix.indices, tf.cast(matrix.values, values.dtype), matrix.dense_shape)
            return tf.sparse.sparse_dense_matmul(matrix, values, adjoint_a=True)
        weighted = tf.cast(self.barycentric, values.dtype)[:, :, None] * values[None, :, :]  # [d+1, P, C]
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

    def slice(self, vertex_values, implementation="portable", matrix=None):
        """[V, C] vertex values -> [P, C] point values: barycentric interpolation times alpha."""
        if implementation == "fast":
            matrix = self.sparse_matrix() if matrix is None else matrix
            if matrix.dtype != vertex_values.dtype:
                matrix = tf.SparseTensor(matrix.indices, tf.cast(matrix.values, vertex_values.dtype),
                                         matrix.dense_shape)
            out = tf.sparse.sparse_dense_matmul(matrix, vertex_values)
        else:
            gathered = tf.gather(vertex_values, self.vertex_index)  # [d+1, P, C]
            out = tf.reduce_sum(gathered * tf.cast(self.barycentric, vertex_values.dtype)[:, :, None], axis=0)
        return out * tf.cast(self.alpha, out.dtype)

    def filter(self, values, implementation="portable", reverse=False, matrix=None):
        """Approximate Gaussian filter ``out_i = sum_j exp(-|f_i - f_j|^2 / 2) values_j`` of [P, C] values.

        ``matrix``: a cached plain ``sparse_matrix()`` for the fast path.
        """
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(f"implementation={implementation!r}; valid: {list(IMPLEMENTATIONS)}")
        vertex_values = self.splat(values, implementation, matrix)
        vertex_values = self.blur(vertex_values, reverse=reverse)
        return self.slice(vertex_values, implementation, matrix)
