"""MaxPoolingWithMask2D / MaxUnpooling2D against TF's reference: tf.nn.max_pool_with_argmax + a scatter."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseg.layers import MaxPoolingWithMask2D, MaxUnpooling2D
from tfseg.layers.unpooling import max_pool_with_mask, max_unpool, pooled_size


def reference_pool(x, pool_size, padding):
    """TF's op: pooled values and flat argmax indices (batch included)."""
    return tf.nn.max_pool_with_argmax(x, pool_size, pool_size, padding.upper(), include_batch_in_index=True)


def reference_unpool(values, argmax, like):
    """Scatter ``values`` to the flat ``argmax`` positions of a zero tensor shaped like ``like``."""
    flat = tf.scatter_nd(tf.reshape(argmax, [-1, 1]), tf.reshape(values, [-1]), [tf.size(like, out_type=tf.int64)])
    return tf.reshape(flat, tf.shape(like))


def tied_input(rng, shape):
    """Small integers: most windows hold several equal maxima, so tie breaking is exercised."""
    return tf.constant(rng.integers(-2, 3, shape).astype("float32"))


CASES = [  # (pool_size, padding, input shape): odd and even sizes, batches 1..3
    (2, "same", (2, 45, 60, 3)),
    (2, "same", (1, 23, 31, 5)),
    (2, "same", (3, 8, 6, 2)),
    (2, "valid", (2, 45, 61, 3)),
    (3, "same", (2, 7, 11, 2)),
    (3, "valid", (1, 10, 8, 2)),
    (2, "same", (1, 1, 1, 1)),
]


CASE_IDS = [f"k{k}-{p}-{'x'.join(map(str, s))}" for k, p, s in CASES]


@pytest.mark.parametrize("pool_size,padding,shape", CASES, ids=CASE_IDS)
def test_pool_and_unpool_equal_tf_reference_with_ties(pool_size, padding, shape):
    rng = np.random.default_rng(sum(shape))
    x = tied_input(rng, shape)
    pooled, mask = max_pool_with_mask(x, pool_size, padding)
    values = tf.constant(rng.normal(size=pooled.shape).astype("float32"))
    ref_pooled, argmax = reference_pool(x, pool_size, padding)
    assert mask.shape == x.shape
    np.testing.assert_array_equal(pooled, ref_pooled)
    np.testing.assert_array_equal(mask, reference_unpool(tf.ones_like(values), argmax, x))
    np.testing.assert_array_equal(max_unpool(values, mask, pool_size, padding), reference_unpool(values, argmax, x))
    # Not vacuous: many windows hold several maxima, and the chosen maximum is not always the first pixel.
    tied, chosen_off_corner = window_statistics(np.asarray(x), np.asarray(mask), pool_size, padding)
    if np.prod(shape) > 16:  # the 1x1 case has one window
        assert tied > 0.2 and chosen_off_corner > 0.2, (tied, chosen_off_corner)


def window_statistics(x, mask, k, padding):
    """(fraction of windows with several maxima, fraction whose marked maximum is not the window's first pixel)."""
    batch, height, width, channels = x.shape
    if padding == "same":
        pad_h, pad_w = -height % k, -width % k
        spec = ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0))
        x, mask = np.pad(x, spec, constant_values=-np.inf), np.pad(mask, spec)
    else:
        x, mask = x[:, : height // k * k, : width // k * k], mask[:, : height // k * k, : width // k * k]
    grid = lambda a: a.reshape(batch, a.shape[1] // k, k, a.shape[2] // k, k, channels).transpose(0, 1, 3, 5, 2, 4)
    windows, marks = grid(x).reshape(-1, k * k), grid(mask).reshape(-1, k * k)
    assert (marks.sum(axis=1) == 1).all()
    tied = ((windows == windows.max(axis=1, keepdims=True)).sum(axis=1) > 1).mean()
    return tied, (marks[:, 0] == 0).mean()


@pytest.mark.parametrize("ties", [True, False], ids=["ties", "distinct"])
@pytest.mark.parametrize("pool_size,padding,shape", [(2, "same", (2, 45, 60, 3)), (3, "valid", (2, 11, 13, 2))])
def test_gradients_equal_the_references(pool_size, padding, shape, ties):
    """d/dx and d/dextra of a loss through pooling, a decoder step using the pooled values, and unpooling."""
    rng = np.random.default_rng(1)
    x = tied_input(rng, shape) if ties else tf.constant(rng.normal(size=shape).astype("float32"))
    pooled_shape = (shape[0], pooled_size(shape[1], pool_size, padding), pooled_size(shape[2], pool_size, padding),
                    shape[3])
    extra, weights_pooled = (tf.constant(rng.normal(size=pooled_shape).astype("float32")) for _ in range(2))
    weights_out = tf.constant(rng.normal(size=shape).astype("float32"))

    def loss_and_gradients(pool, unpool):
        with tf.GradientTape() as tape:
            tape.watch([x, extra])
            pooled, switches = pool(x)
            values = 3.0 * pooled + extra
            loss = tf.reduce_sum(pooled * weights_pooled) + tf.reduce_sum(unpool(values, switches) * weights_out)
        return loss, tape.gradient(loss, [x, extra])

    loss, (grad_x, grad_extra) = loss_and_gradients(
        lambda t: max_pool_with_mask(t, pool_size, padding), lambda v, mask: max_unpool(v, mask, pool_size, padding))
    ref_loss, (ref_grad_x, ref_grad_extra) = loss_and_gradients(
        lambda t: reference_pool(t, pool_size, padding), lambda v, argmax: reference_unpool(v, argmax, x))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    assert np.count_nonzero(ref_grad_x) > 0 and np.count_nonzero(ref_grad_extra) > 0
    np.testing.assert_allclose(grad_x, ref_grad_x, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad_extra, ref_grad_extra, rtol=1e-6, atol=1e-6)
    # The pooling's gradient goes to one position per window (the first maximum), never split among ties.
    assert np.count_nonzero(np.asarray(grad_x)) <= np.prod(pooled_shape)


def tiny_encoder_decoder(input_shape=(None, None, 3)):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    pooled, mask = MaxPoolingWithMask2D(2, name="pool")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", name="decode")(pooled)
    x = MaxUnpooling2D(2, name="unpool")([x, mask])
    return keras.Model(inputs, x)


def test_layers_in_a_model_any_size_and_batch_and_keras_roundtrip(tmp_path):
    model = tiny_encoder_decoder()
    rng = np.random.default_rng(2)
    for shape in [(1, 45, 60, 3), (3, 46, 61, 3), (2, 23, 30, 3), (1, 1, 1, 3)]:
        image = rng.normal(size=shape).astype("float32")
        out = model(image)
        assert out.shape == shape[:3] + (4,)
        nonzero_per_window = np.asarray(tf.nn.max_pool2d(tf.cast(out != 0, "float32"), 2, 2, "SAME"))
        assert nonzero_per_window.max() == 1  # at most one value per 2x2 window
    pooled_shape, mask_shape = MaxPoolingWithMask2D(3, "valid").compute_output_shape((None, 45, 61, 8))
    assert (pooled_shape, mask_shape) == ((None, 15, 20, 8), (None, 45, 61, 8))
    image = rng.normal(size=(2, 45, 61, 3)).astype("float32")
    before = model.predict(image, verbose=0)
    path = tmp_path / "unpool.keras"
    model.save(path)
    keras.backend.clear_session()
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.get_layer("unpool"), MaxUnpooling2D)
    np.testing.assert_array_equal(loaded.predict(image, verbose=0), before)
    config = MaxUnpooling2D(3, "valid", name="u").get_config()
    assert (config["pool_size"], config["padding"]) == (3, "valid")
    assert MaxPoolingWithMask2D.from_config(MaxPoolingWithMask2D(3, "valid").get_config()).padding == "valid"


def test_bad_arguments_and_shapes_are_named():
    with pytest.raises(ValueError, match="pool_size must be a positive int"):
        MaxPoolingWithMask2D(0)
    with pytest.raises(ValueError, match="pool_size must be a positive int"):
        MaxUnpooling2D((2, 2))
    with pytest.raises(ValueError, match=r"padding='full'; valid: \['same', 'valid'\]"):
        MaxPoolingWithMask2D(2, padding="full")
    mask = keras.Input((45, 60, 8))
    with pytest.raises(ValueError, match=r"values height 22 does not match the mask's height 45 .*expected 23"):
        MaxUnpooling2D(2)([keras.Input((22, 30, 8)), mask])
    with pytest.raises(ValueError, match="values have 4 channels but the mask 8"):
        MaxUnpooling2D(2)([keras.Input((23, 30, 4)), mask])
    with pytest.raises(ValueError, match="must be 4-D"):
        MaxUnpooling2D(2)([keras.Input((23, 30)), mask])


def convert_to_tflite_builtins(model, folder):
    """SavedModel export, then conversion with TFLITE_BUILTINS only (Keras 3 models convert through a SavedModel)."""
    model.export(str(folder), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def run_tflite(model_content, image):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_content)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, image.shape, strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, image)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_exported_form_is_tflite_builtins_only_and_exact(tmp_path):
    """The pooling/unpooling pair converts with TFLITE_BUILTINS alone and gives TF's values, ties included."""
    shape = (2, 45, 61, 3)
    model = tiny_encoder_decoder(shape[1:])
    identity = np.zeros((3, 3, 3, 4), "float32")
    identity[1, 1, :, :3] = np.eye(3)
    model.get_layer("conv").set_weights([identity, np.zeros(4)])  # the integer ties reach the pooling intact
    image = np.asarray(tied_input(np.random.default_rng(3), shape))
    got = run_tflite(convert_to_tflite_builtins(model, tmp_path / "saved_model"), image)
    expected = model.predict(image, verbose=0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Same positions exactly (tie breaking included): the unpooled maps are nonzero at the same pixels.
    assert np.count_nonzero(expected) == 2 * 23 * 31 * 4  # one value per window and channel
    np.testing.assert_array_equal(got != 0, expected != 0)

    # The premise: TF's own MaxPoolWithArgmax is not a builtin.
    reference = tf.function(lambda t: tf.nn.max_pool_with_argmax(t, 2, 2, "SAME")[0]).get_concrete_function(
        tf.TensorSpec(shape, tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([reference])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    with pytest.raises(Exception, match="MaxPoolWithArgmax"):
        converter.convert()
