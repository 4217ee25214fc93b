"""The builtin-only hash table (tfseg.crf.hashing) against tf.unique, and the lattices built with it.

tf.unique is the reference: HashTable must give the same numbering (first occurrence), the same
distinct keys and lookups that agree with a Python dict, also when keys collide so often that
most of them end up in the tf.unique fallback, and in the TFLite interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfseg.crf import HashTable, PermutohedralLattice, hash_unique
from tfseg.crf.hashing import _table_size
from tfseg.crf.mean_field import SpatialLattice, _pixel_grid


def colliding_keys(count, rng):
    """Keys that all start probing at slot 0 (multiples of the table size), with repeats."""
    size = int(_table_size(tf.constant(count)))
    return rng.integers(0, count // 3 + 1, count).astype(np.int64) * size


def key_sets():
    rng = np.random.default_rng(0)
    return {
        "empty": np.zeros([0], np.int64),
        "one": np.array([7], np.int64),
        "small range": rng.integers(0, 300, 1000).astype(np.int64),
        "distinct, huge": rng.integers(0, 2**62, 20000).astype(np.int64),
        "negative": rng.integers(-5000, 5000, 20000).astype(np.int64),
        "runs": np.repeat(rng.integers(0, 10**12, 3000), rng.integers(1, 9, 3000)).astype(np.int64),
        "colliding": colliding_keys(3000, rng),
    }


@pytest.mark.parametrize("rounds", [1, 4])
def test_numbers_like_tf_unique(rounds):
    for name, keys in key_sets().items():
        check_numbering(keys, rounds)


def check_numbering(keys, rounds):
    table = HashTable(tf.constant(keys), rounds=rounds)
    expected_keys, expected_ids = tf.unique(tf.constant(keys), out_idx=tf.int32)
    np.testing.assert_array_equal(table.ids.numpy(), expected_ids.numpy())
    np.testing.assert_array_equal(table.keys.numpy(), expected_keys.numpy())
    assert int(table.count) == len(expected_keys)
    _, first = np.unique(keys, return_index=True)
    np.testing.assert_array_equal(table.representatives.numpy(), np.sort(first))
    distinct, ids = hash_unique(tf.constant(keys))
    np.testing.assert_array_equal(ids.numpy(), expected_ids.numpy())
    np.testing.assert_array_equal(distinct.numpy(), expected_keys.numpy())


@pytest.mark.parametrize("rounds", [1, 4])
def test_lookup_finds_numbers_and_absent_keys(rounds):
    sets = key_sets()
    for name in ["one", "small range", "distinct, huge", "runs", "colliding"]:
        check_lookup(sets[name], rounds)


def check_lookup(keys, rounds):
    table = HashTable(tf.constant(keys), rounds=rounds)
    numbers = {key: number for number, key in enumerate(table.keys.numpy().tolist())}
    rng = np.random.default_rng(1)
    absent = np.setdiff1d(np.concatenate([keys + 1, keys * 3 + 5, rng.integers(0, 2**40, 500)]), keys)
    queries = rng.permutation(np.concatenate([keys, absent[:2000]]))
    expected = [numbers.get(key, -1) for key in queries.tolist()]
    np.testing.assert_array_equal(table.lookup(tf.constant(queries)).numpy(), expected)


def test_colliding_keys_use_the_fallback():
    """The colliding set really exercises the leftover path (the test above would be vacuous otherwise)."""
    table = HashTable(tf.constant(colliding_keys(3000, np.random.default_rng(2))))
    assert int(tf.shape(table._leftover_keys)[0]) > 500


@pytest.mark.parametrize("rounds", [1, 4])
def test_tagged_keys_number_distinct_pairs(rounds):
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 40, 5000).astype(np.int64) * 10**15
    tags = rng.integers(0, 7, 5000).astype(np.int64)
    table = HashTable(tf.constant(keys), tags=tf.constant(tags), tag_bound=7, rounds=rounds)
    first_seen = {}
    for key, tag in zip(keys.tolist(), tags.tolist()):
        first_seen.setdefault((key, tag), len(first_seen))
    expected = [first_seen[(key, tag)] for key, tag in zip(keys.tolist(), tags.tolist())]
    np.testing.assert_array_equal(table.ids.numpy(), expected)
    with pytest.raises(ValueError, match="lookup needs a table built without tags"):
        table.lookup(tf.constant(keys))


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"keys must be 1-D; got shape \(2, 2\)"):
        HashTable(tf.zeros([2, 2], tf.int64))
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        HashTable(tf.zeros([2], tf.int64), rounds=0)
    with pytest.raises(ValueError, match="tags and tag_bound go together"):
        HashTable(tf.zeros([2], tf.int64), tags=tf.zeros([2], tf.int64))


def test_converts_to_tflite_builtins_and_matches():
    """Insert and lookup run in the LiteRT interpreter with builtin ops only, with TF's results."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64)])
    def insert_and_lookup(keys, queries):
        table = HashTable(keys)
        return table.ids, table.lookup(queries)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([insert_and_lookup.get_concrete_function()])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    interpreter = litert.Interpreter(model_content=converter.convert())
    rng = np.random.default_rng(4)
    for keys in (key_sets()["runs"], colliding_keys(2000, rng)):
        queries = np.concatenate([keys[::3], keys + 1])
        inputs = interpreter.get_input_details()
        for detail, value in zip(inputs, (keys, queries)):
            interpreter.resize_tensor_input(detail["index"], value.shape)
        interpreter.allocate_tensors()
        for detail, value in zip(inputs, (keys, queries)):
            interpreter.set_tensor(detail["index"], value)
        interpreter.invoke()
        got = sorted((interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()), key=len)
        expected = sorted((t.numpy() for t in insert_and_lookup(tf.constant(keys), tf.constant(queries))), key=len)
        for a, b in zip(got, expected):
            np.testing.assert_array_equal(a, b)


def _features(image, sxy, srgb=None):
    height, width = image.shape[:2]
    ys, xs = np.mgrid[:height, :width].astype(np.float32)
    features = [xs.ravel() / np.float32(sxy), ys.ravel() / np.float32(sxy)]
    if srgb is not None:
        features += [image[..., c].ravel().astype(np.float32) / np.float32(srgb) for c in range(3)]
    return [tf.constant(f) for f in features]


@pytest.mark.parametrize("kernel", [(3.0, None), (80.0, 13.0), (5.0, 2.0)], ids=["gaussian", "bilateral", "fine"])
def test_lattice_is_the_same_with_either_hashing(kernel):
    """Same vertices, same numbering, same blur neighbours: the portable lattice is the fast one."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    image[:20] //= 8  # a smooth part (many points per vertex) and a noisy part
    features = _features(image, *kernel)
    a = PermutohedralLattice(features, hashing="unique")
    b = PermutohedralLattice(features, hashing="table")
    assert int(a.num_vertices) == int(b.num_vertices) > 0
    np.testing.assert_array_equal(a.vertex_index.numpy(), b.vertex_index.numpy())
    np.testing.assert_array_equal(a.barycentric.numpy(), b.barycentric.numpy())
    for (a_minus, a_plus), (b_minus, b_plus) in zip(a.blur_neighbours, b.blur_neighbours):
        np.testing.assert_array_equal(a_minus.numpy(), b_minus.numpy())
        np.testing.assert_array_equal(a_plus.numpy(), b_plus.numpy())
    with pytest.raises(ValueError, match="hashing='sort'"):
        PermutohedralLattice(features, hashing="sort")


def test_spatial_lattice_constants_equal_the_runtime_lattice():
    """The precomputed spatial lattice of a batch equals the one built from the features at run time."""
    height, width, batch, sxy = 23, 31, 3, 3.0
    xs, ys = _pixel_grid(height, width)
    image_index = tf.repeat(tf.range(batch), height * width)
    runtime = PermutohedralLattice([tf.tile(xs / np.float32(sxy), [batch]), tf.tile(ys / np.float32(sxy), [batch])],
                                   image_index)
    constant = SpatialLattice(height, width, sxy, tf.constant(batch))
    assert int(constant.num_vertices) == int(runtime.num_vertices)
    np.testing.assert_array_equal(constant.vertex_index.numpy(), runtime.vertex_index.numpy())
    np.testing.assert_array_equal(constant.barycentric.numpy(), runtime.barycentric.numpy())
    for pair, expected in zip(constant.blur_neighbours, runtime.blur_neighbours):
        for got, want in zip(pair, expected):
            np.testing.assert_array_equal(got.numpy(), want.numpy())
