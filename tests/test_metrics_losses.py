"""Confusion-matrix metrics and the ignore-label cross-entropy against independent numpy computations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseg.losses import SparseCrossEntropyWithIgnore
from tfseg.metrics import ConfusionMatrixMetrics, confusion_matrix, scores_from_confusion

REPO = Path(__file__).resolve().parents[1]
SCALARS = ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou")


# ---------------------------------------------------------------------------------------------
# Independent numpy reference (FCN paper, section 5; explicit loops over classes)


def numpy_confusion(labels, predicted, num_classes, ignore_label=None):
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    predicted = np.asarray(predicted).reshape(-1).astype(np.int64)
    keep = np.ones(labels.shape, bool) if ignore_label is None else labels != ignore_label
    counts = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(counts, (labels[keep], predicted[keep]), 1)
    return counts


def numpy_scores(n):
    """The four FCN scores and per-class IoU, classes absent from truth and prediction left out."""
    n = np.asarray(n, np.float64)
    num_classes = n.shape[0]
    t = n.sum(axis=1)
    accuracies, ious, iou_per_class = [], [], np.full(num_classes, np.nan)
    fw_sum = 0.0
    for i in range(num_classes):
        union = t[i] + n[:, i].sum() - n[i, i]
        if t[i] > 0:
            accuracies.append(n[i, i] / t[i])
        if union > 0:
            ious.append(n[i, i] / union)
            iou_per_class[i] = n[i, i] / union
            fw_sum += t[i] * n[i, i] / union
    return {
        "pixel_accuracy": np.trace(n) / t.sum(),
        "mean_accuracy": np.mean(accuracies),
        "mean_iou": np.mean(ious),
        "frequency_weighted_iou": fw_sum / t.sum(),
        "iou": iou_per_class,
    }


def assert_scores_match(result, expected, num_classes, rtol=1e-6):
    for key in SCALARS:
        np.testing.assert_allclose(float(result[key]), expected[key], rtol=rtol, err_msg=key)
    got_iou = np.array([float(result[f"iou_{k}"]) for k in range(num_classes)])
    np.testing.assert_allclose(got_iou, expected["iou"], rtol=rtol)


# ---------------------------------------------------------------------------------------------
# Metric


def test_streaming_random_batches_with_ignore_label():
    rng = np.random.default_rng(1)
    num_classes, ignore = 6, 255
    metric = ConfusionMatrixMetrics(num_classes, ignore_label=ignore)
    all_labels, all_predicted = [], []
    for step in range(3):
        labels = rng.integers(0, num_classes, size=(2, 17, 23))
        labels[rng.random(labels.shape) < 0.2] = ignore
        logits = rng.normal(size=(2, 17, 23, num_classes)).astype(np.float32)
        logits[..., 5] -= 3.0  # class 5 rarely predicted
        if step == 1:  # [B, H, W, 1] labels, int label predictions
            predicted = np.argmax(logits, -1)
            metric.update_state(labels[..., None].astype(np.uint8), predicted.astype(np.int32))
        else:
            predicted = np.argmax(logits, -1)
            metric.update_state(labels, logits)
        all_labels.append(labels)
        all_predicted.append(predicted)
    expected_cm = numpy_confusion(np.concatenate(all_labels), np.concatenate(all_predicted), num_classes, ignore)
    np.testing.assert_array_equal(metric.confusion.numpy(), expected_cm)
    assert_scores_match(metric.result(), numpy_scores(expected_cm), num_classes)

    metric.reset_state()
    assert float(np.sum(metric.confusion.numpy())) == 0.0


def test_absent_classes_are_left_out_of_the_means():
    # Class 0: true 4 px, all right. Class 1: true 4 px, 2 predicted as class 2.
    # Class 2: never true, predicted twice -> left out of mean accuracy, IoU 0 counted in mean IoU.
    # Class 3: neither true nor predicted -> left out of both means.
    labels = np.array([[0, 0, 0, 0, 1, 1, 1, 1, 9, 9]])
    predicted = np.array([[0, 0, 0, 0, 1, 1, 2, 2, 3, 3]])  # the 9s are ignored, their predictions too
    metric = ConfusionMatrixMetrics(4, ignore_label=9)
    metric.update_state(labels, predicted)
    result = metric.result()
    np.testing.assert_allclose(float(result["pixel_accuracy"]), 6 / 8)
    np.testing.assert_allclose(float(result["mean_accuracy"]), (1.0 + 0.5) / 2)
    np.testing.assert_allclose(float(result["mean_iou"]), (1.0 + 2 / 4 + 0.0) / 3)
    np.testing.assert_allclose(float(result["frequency_weighted_iou"]), (4 * 1.0 + 4 * 0.5) / 8)
    assert np.isnan(float(result["iou_3"]))
    assert float(result["iou_2"]) == 0.0


def test_out_of_range_labels_raise():
    metric = ConfusionMatrixMetrics(4, ignore_label=255)
    logits = np.zeros((1, 2, 2, 4), np.float32)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"y_true holds labels outside \[0, 4\)"):
        metric.update_state(np.array([[[0, 1], [7, 255]]]), logits)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"y_pred holds labels outside"):
        metric.update_state(np.array([[[0, 1], [2, 255]]]), np.array([[[0, 1], [4, 0]]]))
    # The same inside a tf.function (fit/evaluate run the update in graph mode).
    update = tf.function(metric.update_state)
    with pytest.raises(tf.errors.InvalidArgumentError, match="y_true holds labels outside"):
        update(tf.constant([[[0, 1], [-1, 255]]]), tf.constant(logits))
    # A prediction out of range on an ignored pixel is fine, and nothing was counted so far.
    metric.update_state(np.array([[[0, 1], [2, 255]]]), np.array([[[0, 1], [2, 17]]]))
    assert float(np.sum(metric.confusion.numpy())) == 3.0


def test_confusion_matrix_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="do not match"):
        confusion_matrix(np.zeros((1, 4, 4), np.int32), np.zeros((1, 8, 8, 3), np.float32), 3)


def _camvid_val_labels():
    camvid = pytest.importorskip("tfseg.data.camvid")
    try:
        pairs = camvid.split_files("val")
    except FileNotFoundError as error:
        pytest.skip(str(error))
    return np.stack([camvid.read_label(label) for _, label in pairs]), camvid


def test_camvid_val_labels_against_shifted_copy():
    labels, camvid = _camvid_val_labels()
    num_classes, void = camvid.NUM_CLASSES, camvid.IGNORE_LABEL
    assert labels.shape[0] == 101 and labels.max() == void
    shifted = np.roll(labels, shift=(3, -5), axis=(1, 2))
    # A model never predicts void: where the shifted copy is void, predict the true label.
    predicted = np.where(shifted == void, labels, shifted)

    metric = ConfusionMatrixMetrics(num_classes, ignore_label=void)
    for start in range(0, len(labels), 25):
        metric.update_state(labels[start : start + 25], predicted[start : start + 25])
    expected_cm = numpy_confusion(labels, predicted, num_classes, void)
    np.testing.assert_array_equal(metric.confusion.numpy(), expected_cm)
    expected = numpy_scores(expected_cm)
    assert_scores_match(metric.result(), expected, num_classes)
    assert 0.5 < expected["mean_iou"] < 0.99  # a shift of a few pixels hurts thin classes, not much else

    # The raw shifted copy predicts void on valid pixels: an error, not a silent miscount.
    with pytest.raises(tf.errors.InvalidArgumentError, match="y_pred holds labels outside"):
        metric.update_state(labels[:4], shifted[:4])


def test_scores_from_confusion_is_a_tf_function_of_the_matrix():
    counts = np.array([[50, 3, 0], [4, 20, 1], [0, 0, 0]])
    scores = tf.function(scores_from_confusion)(tf.constant(counts))
    expected = numpy_scores(counts)
    for key in SCALARS:
        np.testing.assert_allclose(scores[key].numpy(), expected[key], rtol=1e-12)
    np.testing.assert_allclose(scores["iou"].numpy(), expected["iou"], rtol=1e-12)
    empty = scores_from_confusion(tf.zeros((3, 3)))
    assert all(np.isnan(empty[key].numpy()) for key in SCALARS)


def test_metric_config_round_trip():
    metric = ConfusionMatrixMetrics(5, ignore_label=255, key_prefix="seg_", name="scores")
    clone = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert isinstance(clone, ConfusionMatrixMetrics)
    assert (clone.num_classes, clone.ignore_label, clone.key_prefix, clone.name) == (5, 255, "seg_", "scores")
    assert "seg_mean_iou" in clone.result()


# ---------------------------------------------------------------------------------------------
# Loss


def numpy_cross_entropy(labels, logits, ignore_label=None, class_weights=None, sample_weight=None):
    logits = logits.astype(np.float64)
    log_probabilities = logits - logits.max(-1, keepdims=True)
    log_probabilities -= np.log(np.exp(log_probabilities).sum(-1, keepdims=True))
    flat_labels = labels.reshape(-1)
    flat_log_probabilities = log_probabilities.reshape(-1, logits.shape[-1])
    weights = np.ones(flat_labels.shape) if sample_weight is None else np.broadcast_to(
        sample_weight.reshape(sample_weight.shape + (1,) * (labels.ndim - sample_weight.ndim)), labels.shape
    ).reshape(-1)
    numerator = denominator = 0.0
    for pixel, label in enumerate(flat_labels):
        if label == ignore_label:
            continue
        w = weights[pixel] * (1.0 if class_weights is None else class_weights[label])
        numerator += -w * flat_log_probabilities[pixel, label]
        denominator += w
    return numerator / denominator if denominator else 0.0


@pytest.mark.parametrize("class_weights", [None, [0.5, 1.0, 2.0, 4.0]])
def test_loss_matches_numpy_with_ignore_and_class_weights(class_weights):
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=(2, 6, 7))
    labels[rng.random(labels.shape) < 0.3] = 255
    logits = (3 * rng.normal(size=(2, 6, 7, 4))).astype(np.float32)
    loss = SparseCrossEntropyWithIgnore(ignore_label=255, class_weights=class_weights)
    expected = numpy_cross_entropy(labels, logits, 255, class_weights)
    np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-5)
    np.testing.assert_allclose(float(loss(labels[..., None], logits)), expected, rtol=1e-5)

    probabilities = tf.nn.softmax(logits).numpy()
    from_probabilities = SparseCrossEntropyWithIgnore(255, class_weights, from_logits=False)
    np.testing.assert_allclose(float(from_probabilities(labels, probabilities)), expected, rtol=1e-4)

    sample_weight = np.array([1.0, 3.0])  # per image
    np.testing.assert_allclose(
        float(loss(labels, logits, sample_weight=sample_weight)),
        numpy_cross_entropy(labels, logits, 255, class_weights, sample_weight),
        rtol=1e-5,
    )


def test_loss_on_an_all_ignored_batch_is_zero_with_zero_gradient():
    logits = tf.Variable(np.random.default_rng(0).normal(size=(1, 3, 3, 5)).astype(np.float32))
    loss = SparseCrossEntropyWithIgnore(ignore_label=255, class_weights=[1, 2, 3, 4, 5])
    with tf.GradientTape() as tape:
        value = loss(np.full((1, 3, 3), 255), logits)
    assert float(value) == 0.0
    gradient = tape.gradient(value, logits).numpy()
    assert np.all(np.isfinite(gradient)) and np.all(gradient == 0)


def test_loss_reductions_and_label_checks():
    rng = np.random.default_rng(4)
    labels = np.array([[[0, 1], [255, 2]]])
    logits = rng.normal(size=(1, 2, 2, 3)).astype(np.float32)
    per_pixel = SparseCrossEntropyWithIgnore(255, reduction="none")(labels, logits).numpy()
    assert per_pixel.shape == (1, 2, 2) and per_pixel[0, 1, 0] == 0.0
    total = SparseCrossEntropyWithIgnore(255, reduction="sum")(labels, logits)
    np.testing.assert_allclose(float(total), numpy_cross_entropy(labels, logits, 255) * 3, rtol=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError, match="outside"):
        SparseCrossEntropyWithIgnore(255)(np.array([[[0, 1], [3, 2]]]), logits)
    with pytest.raises(ValueError, match="class weights"):
        SparseCrossEntropyWithIgnore(255, class_weights=[1, 2])(labels, logits)
    clone = keras.losses.deserialize(keras.losses.serialize(SparseCrossEntropyWithIgnore(7, [1.0, 2.0])))
    assert (clone.ignore_label, clone.class_weights, clone.from_logits) == (7, [1.0, 2.0], True)


# ---------------------------------------------------------------------------------------------
# Keras compile / fit / evaluate


def _tiny_model(num_classes):
    inputs = keras.Input((8, 10, 3))
    outputs = keras.layers.Conv2D(num_classes, 3, padding="same", name="classifier")(inputs)
    return keras.Model(inputs, outputs)


def test_compile_fit_evaluate_log_the_scores(tmp_path):
    rng = np.random.default_rng(5)
    num_classes, ignore = 4, 255
    images = rng.normal(size=(12, 8, 10, 3)).astype(np.float32)
    labels = rng.integers(0, num_classes, size=(12, 8, 10)).astype(np.uint8)
    labels[:, :2] = ignore
    model = _tiny_model(num_classes)
    model.compile(
        optimizer="sgd",
        loss=SparseCrossEntropyWithIgnore(ignore_label=ignore),
        metrics=[ConfusionMatrixMetrics(num_classes, ignore_label=ignore)],
    )
    history = model.fit(images, labels, batch_size=4, epochs=1, validation_data=(images, labels), verbose=0)
    for key in ("loss", "mean_iou", "pixel_accuracy", "val_mean_iou", "val_frequency_weighted_iou", "val_iou_3"):
        assert key in history.history, sorted(history.history)

    evaluated = model.evaluate(images, labels, batch_size=5, return_dict=True, verbose=0)
    predicted = np.argmax(model.predict(images, verbose=0), -1)
    expected = numpy_scores(numpy_confusion(labels, predicted, num_classes, ignore))
    assert_scores_match(evaluated, expected, num_classes, rtol=1e-5)
    logits = model.predict(images, verbose=0)
    # evaluate's loss is the mean of per-batch means (batches 5, 5, 2, same pixel count per image)
    batch_losses = [numpy_cross_entropy(labels[s : s + 5], logits[s : s + 5], ignore) for s in (0, 5, 10)]
    np.testing.assert_allclose(evaluated["loss"], np.average(batch_losses, weights=[5, 5, 2]), rtol=1e-4)

    path = tmp_path / "tiny.keras"
    model.save(path)
    reloaded = keras.models.load_model(path)
    again = reloaded.evaluate(images, labels, batch_size=5, return_dict=True, verbose=0)
    np.testing.assert_allclose(again["mean_iou"], evaluated["mean_iou"], rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# tf.distribute: two logical CPUs, in a fresh interpreter (logical devices must precede TF init)

MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from tfseg.losses import SparseCrossEntropyWithIgnore
    from tfseg.metrics import ConfusionMatrixMetrics

    data = np.load(sys.argv[1])
    labels, logits, images = data["labels"], data["logits"], data["images"]
    num_classes, ignore = int(data["num_classes"]), int(data["ignore"])
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    out = {"replicas": strategy.num_replicas_in_sync}

    # 1. strategy.run on a distributed dataset: each replica updates its own copy.
    with strategy.scope():
        metric = ConfusionMatrixMetrics(num_classes, ignore_label=ignore)
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((labels, logits)).batch(4))

    @tf.function
    def step(y, p):
        strategy.run(metric.update_state, args=(y, p))

    for y, p in dataset:
        step(y, p)
    local = strategy.experimental_local_results(metric.confusion.value)
    out["local_totals"] = [float(np.sum(v.numpy())) for v in local]
    out["confusion"] = np.asarray(metric.confusion.value).tolist()
    out["run"] = {k: float(v) for k, v in metric.result().items()}

    # 2. model.evaluate under the strategy, metric created by compile.
    with strategy.scope():
        inputs = keras.Input(images.shape[1:])
        outputs = keras.layers.Conv2D(num_classes, 1, name="classifier")(inputs)
        model = keras.Model(inputs, outputs)
        model.compile(loss=SparseCrossEntropyWithIgnore(ignore),
                      metrics=[ConfusionMatrixMetrics(num_classes, ignore_label=ignore)])
    model.get_layer("classifier").set_weights([data["kernel"], data["bias"]])
    out["evaluate"] = model.evaluate(images, labels, batch_size=4, return_dict=True, verbose=0)
    print("RESULT" + json.dumps(out))
    """
)


def test_mirrored_strategy_sums_replica_counts(tmp_path):
    rng = np.random.default_rng(6)
    num_classes, ignore = 5, 255
    labels = rng.integers(0, num_classes, size=(12, 6, 7)).astype(np.int32)
    labels[rng.random(labels.shape) < 0.15] = ignore
    logits = rng.normal(size=(12, 6, 7, num_classes)).astype(np.float32)
    images = rng.normal(size=(12, 6, 7, 3)).astype(np.float32)
    kernel = rng.normal(size=(1, 1, 3, num_classes)).astype(np.float32)
    bias = rng.normal(size=(num_classes,)).astype(np.float32)
    data = tmp_path / "data.npz"
    np.savez(data, labels=labels, logits=logits, images=images, kernel=kernel, bias=bias,
             num_classes=num_classes, ignore=ignore)

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(REPO))
    completed = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT, str(data)], capture_output=True, text=True, env=env, timeout=300
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT")]
    assert completed.returncode == 0 and lines, completed.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT"):])

    expected_cm = numpy_confusion(labels, np.argmax(logits, -1), num_classes, ignore)
    assert out["replicas"] == 2
    # Both replicas counted pixels, and the read value is their sum (no double counting).
    assert all(total > 0 for total in out["local_totals"])
    assert sum(out["local_totals"]) == expected_cm.sum()
    np.testing.assert_array_equal(np.array(out["confusion"]), expected_cm)
    assert_scores_match(out["run"], numpy_scores(expected_cm), num_classes)

    model_logits = np.einsum("bhwc,ck->bhwk", images, kernel[0, 0]) + bias
    expected_eval = numpy_scores(numpy_confusion(labels, np.argmax(model_logits, -1), num_classes, ignore))
    assert_scores_match(out["evaluate"], expected_eval, num_classes, rtol=1e-5)
