"""ImageNet weight files: table, cache/download/hash checks and strict by-name loading.

Weight files are written here from keras.applications models built with ``weights=None`` in the
legacy HDF5 layout of the real downloads, so no network is needed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import time

import h5py
import keras
import numpy as np
import pytest

from tfseg.backbones import weights as W

VGG_SHAPE = (32, 32, 3)
MOBILENET_SHAPE = (64, 64, 3)
MOBILENET_ALPHA = 0.35


def keras_vgg16():
    return keras.applications.VGG16(include_top=False, weights=None, input_shape=VGG_SHAPE)


def keras_mobilenet_v2():
    return keras.applications.MobileNetV2(
        input_shape=MOBILENET_SHAPE, alpha=MOBILENET_ALPHA, include_top=False, weights=None
    )


def save_legacy_h5(model, path):
    """The legacy ``layer_names``/``weight_names`` layout, written by Keras' own legacy writer."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    return path


def write_h5(path, layers):
    """Write ``{layer: [(weight_name, array), ...]}`` in the legacy layout by hand (h5py only)."""
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [name.encode("utf8") for name in layers]
        for name, tensors in layers.items():
            group = handle.create_group(name)
            group.attrs["weight_names"] = [w.encode("utf8") for w, _ in tensors]
            for weight_name, value in tensors:
                group.create_dataset(weight_name, data=value)
    return path


def all_weights(model):
    return [keras.ops.convert_to_numpy(v) for v in model.weights]


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    keras.utils.set_random_seed(1)
    source = keras_vgg16()
    path = save_legacy_h5(source, tmp_path_factory.mktemp("vgg") / "vgg16_notop.h5")
    return path, all_weights(source)


@pytest.fixture(scope="module")
def mobilenet_file(tmp_path_factory):
    keras.utils.set_random_seed(2)
    source = keras_mobilenet_v2()
    # Give BN statistics distinct values so an order mix-up cannot go unnoticed.
    for layer in source.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            size = layer.moving_mean.shape[0]
            layer.moving_mean.assign(np.linspace(-0.5, 0.5, size).astype("float32"))
            layer.moving_variance.assign(np.linspace(0.5, 2.0, size).astype("float32"))
            layer.gamma.assign(np.linspace(0.8, 1.2, size).astype("float32"))
            layer.beta.assign(np.linspace(-0.1, 0.1, size).astype("float32"))
    path = save_legacy_h5(source, tmp_path_factory.mktemp("mnv2") / "mobilenet_v2_035.h5")
    return path, all_weights(source)


def images(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, size=(2,) + shape).astype("float32")


# ---------------------------------------------------------------------------------------------
# The table


def test_table_matches_the_installed_keras_applications_source():
    from keras.src.applications import mobilenet_v2, resnet, vgg16

    vgg_source = inspect.getsource(vgg16)
    assert W.IMAGENET_WEIGHTS["vgg16"].url == vgg16.WEIGHTS_PATH_NO_TOP
    assert W.IMAGENET_WEIGHTS["vgg16_top"].url == vgg16.WEIGHTS_PATH
    assert f'file_hash="{W.IMAGENET_WEIGHTS["vgg16"].file_hash}"' in vgg_source
    assert f'file_hash="{W.IMAGENET_WEIGHTS["vgg16_top"].file_hash}"' in vgg_source
    for name in ("resnet50", "resnet101"):
        entry = W.IMAGENET_WEIGHTS[name]
        assert entry.url == resnet.BASE_WEIGHTS_PATH + entry.file_name
        assert entry.file_hash == resnet.WEIGHTS_HASHES[name][1]  # [1]: include_top=False
    entry = W.IMAGENET_WEIGHTS["mobilenet_v2"]
    assert entry.url == mobilenet_v2.BASE_WEIGHT_PATH + entry.file_name
    assert "file_hash" not in inspect.getsource(mobilenet_v2)  # Keras pins no hash for it
    assert entry.file_hash is None and "none published" in entry.hash_source
    for entry in W.IMAGENET_WEIGHTS.values():
        if entry.format == "official_deeplab_tarball":  # Xception-65: tests/test_official_converter.py
            continue
        assert entry.url.startswith("https://storage.googleapis.com/tensorflow/keras-applications/")
        assert entry.url.endswith("/" + entry.file_name)
        if entry.file_hash is not None:
            assert entry.hash_algorithm == "md5" and len(entry.file_hash) == 32


# ---------------------------------------------------------------------------------------------
# Loading


@pytest.mark.parametrize("which", ["vgg16", "mobilenet_v2"])
def test_loaded_model_reproduces_the_source_model(which, vgg_file, mobilenet_file):
    build, (path, source_weights), shape = {
        "vgg16": (keras_vgg16, vgg_file, VGG_SHAPE),
        "mobilenet_v2": (keras_mobilenet_v2, mobilenet_file, MOBILENET_SHAPE),
    }[which]
    keras.utils.set_random_seed(99)
    target = build()
    assert not all(np.array_equal(a, b) for a, b in zip(all_weights(target), source_weights))
    loaded = W.load_imagenet_weights(target, str(path))
    assert len(loaded) == sum(1 for layer in target.layers if layer.weights)
    for got, want in zip(all_weights(target), source_weights):
        np.testing.assert_array_equal(got, want)

    reference = build()
    reference.load_weights(str(path))  # Keras' own legacy loader, for comparison
    x = images(shape)
    np.testing.assert_array_equal(np.asarray(target(x)), np.asarray(reference(x)))


def keras2_name(layer, weight_path):
    """'block_1_depthwise/kernel' (Keras 3) -> 'block_1_depthwise/depthwise_kernel:0' (Keras 2)."""
    base = weight_path.rsplit("/", 1)[-1]
    if layer.endswith("depthwise") and base == "kernel":
        base = "depthwise_kernel"
    return f"{layer}/{base}:0"


def test_keras2_and_keras1_weight_names(tmp_path, vgg_file, mobilenet_file):
    """The real downloads name tensors 'bn_Conv1/gamma:0', 'block_1_depthwise/depthwise_kernel:0'
    (Keras 2) or 'block1_conv1_W_1:0' (Keras 1); loading is positional in the legacy order."""
    mobile = W.read_legacy_h5_weights(mobilenet_file[0])
    keras2 = {layer: [(keras2_name(layer, w), v) for w, v in tensors] for layer, tensors in mobile.items()}
    assert any(w.endswith("depthwise_kernel:0") for t in keras2.values() for w, _ in t)
    target = keras_mobilenet_v2()
    W.load_imagenet_weights(target, write_h5(tmp_path / "keras2.h5", keras2))
    for got, want in zip(all_weights(target), mobilenet_file[1]):
        np.testing.assert_array_equal(got, want)

    vgg = W.read_legacy_h5_weights(vgg_file[0])
    keras1 = {
        layer: [(f"{layer}_{'W' if i == 0 else 'b'}_1:0", v) for i, (_, v) in enumerate(tensors)]
        for layer, tensors in vgg.items()
    }
    target = keras_vgg16()
    W.load_imagenet_weights(target, write_h5(tmp_path / "keras1.h5", keras1))
    for got, want in zip(all_weights(target), vgg_file[1]):
        np.testing.assert_array_equal(got, want)


def test_tensors_stored_in_another_order_are_refused(tmp_path, mobilenet_file):
    layers = W.read_legacy_h5_weights(mobilenet_file[0])
    gamma, beta, mean, variance = layers["bn_Conv1"]
    layers["bn_Conv1"] = [gamma, beta, variance, mean]  # same shapes, names say the order is wrong
    with pytest.raises(W.WeightsMismatchError, match="bn_Conv1/moving_variance' of the file sits where"):
        W.load_imagenet_weights(keras_mobilenet_v2(), write_h5(tmp_path / "swapped.h5", layers))


def test_missing_extra_and_misshaped_tensors_fail_naming_them(tmp_path, vgg_file):
    layers = W.read_legacy_h5_weights(vgg_file[0])
    target = keras_vgg16()
    before = all_weights(target)

    def refused(mutated, *patterns):
        path = write_h5(tmp_path / "mutated.h5", mutated)
        with pytest.raises(W.WeightsMismatchError) as error:
            W.load_imagenet_weights(target, path)
        for pattern in patterns:
            assert pattern in str(error.value), str(error.value)
        for got, want in zip(all_weights(target), before):  # nothing assigned on failure
            np.testing.assert_array_equal(got, want)

    missing = {k: v for k, v in layers.items() if k != "block5_conv3"}
    refused(missing, "get no weights from the file: ['block5_conv3']")

    extra_layer = dict(layers, fc_extra=[("fc_extra/kernel:0", np.zeros((4, 4), "float32"))])
    refused(extra_layer, "layer 'fc_extra' of the file is not in the model")

    extra_tensor = dict(layers)
    extra_tensor["block2_conv1"] = layers["block2_conv1"] + [("block2_conv1/scale:0", np.ones(128, "float32"))]
    refused(extra_tensor, "layer 'block2_conv1': the file has 3 tensors")

    misshaped = dict(layers)
    kernel_name, kernel = layers["block3_conv1"][0]
    misshaped["block3_conv1"] = [(kernel_name, kernel[:, :, :64]), layers["block3_conv1"][1]]
    refused(misshaped, f"'{kernel_name}': shape (3, 3, 64, 256) in the file, (3, 3, 128, 256)")

    # A tensor stored in a group but not listed in weight_names is unused: refused too.
    path = write_h5(tmp_path / "unlisted.h5", layers)
    with h5py.File(path, "a") as handle:
        handle["block1_conv1"].create_dataset("block1_conv1/stray:0", data=np.zeros(3))
    with pytest.raises(W.WeightsMismatchError, match=r"not in weight_names: \['block1_conv1/stray:0'\]"):
        W.load_imagenet_weights(target, path)


def test_nested_backbone_and_inlined_backbone(tmp_path, vgg_file):
    backbone = keras_vgg16()
    inputs = keras.Input(VGG_SHAPE)
    outputs = keras.layers.Conv2D(3, 1, name="head")(backbone(inputs))
    segmenter = keras.Model(inputs, outputs, name="segmenter")
    W.load_imagenet_weights(segmenter, vgg_file[0])  # finds the nested backbone
    for got, want in zip(all_weights(backbone), vgg_file[1]):
        np.testing.assert_array_equal(got, want)

    # Backbone layers directly in the bigger model: the head is reported unless told otherwise.
    flat_backbone = keras_vgg16()
    flat = keras.Model(
        flat_backbone.input, keras.layers.Conv2D(3, 1, name="head")(flat_backbone.output), name="flat"
    )
    with pytest.raises(W.WeightsMismatchError, match=r"get no weights from the file: \['head'\]"):
        W.load_imagenet_weights(flat, vgg_file[0])
    W.load_imagenet_weights(flat, vgg_file[0], require_all=False)
    W.load_imagenet_weights(flat_backbone, vgg_file[0])


def test_full_model_h5_written_by_model_save(tmp_path, mobilenet_file):
    """``model.save('x.h5')`` (the documented legacy format) keeps the weights under 'model_weights'."""
    source = keras_mobilenet_v2()
    source.set_weights(keras_mobilenet_v2().get_weights())
    path = tmp_path / "full_model.h5"
    source.save(path)
    target = keras_mobilenet_v2()
    W.load_imagenet_weights(target, path)
    for got, want in zip(all_weights(target), all_weights(source)):
        np.testing.assert_array_equal(got, want)


def _tfseg_builder(module, function):
    try:
        return getattr(__import__(f"tfseg.backbones.{module}", fromlist=[function]), function)
    except (ImportError, AttributeError):
        pytest.skip(f"tfseg.backbones.{module}.{function} is not written yet")


def assert_endpoints_match(backbone, reference, endpoint_layers, x):
    """tfseg endpoints equal the outputs of the named keras.applications layers."""
    taps = keras.Model(reference.input, {k: reference.get_layer(n).output for k, n in endpoint_layers.items()})
    features, expected = backbone(x), taps(x)
    for key in endpoint_layers:
        want = keras.ops.convert_to_numpy(expected[key])
        assert np.count_nonzero(want) > want.size // 10, key  # not a dead (all-zero) comparison
        scale = float(np.abs(want).max())
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(features[key]), want, rtol=1e-5, atol=1e-5 * scale, err_msg=key
        )


def test_tfseg_vgg16_features_equal_keras_applications(vgg_file):
    vgg16 = _tfseg_builder("vgg", "vgg16")
    backbone = vgg16(VGG_SHAPE)
    W.load_imagenet_weights(backbone, vgg_file[0], backbone="vgg16")
    reference = keras_vgg16()
    reference.load_weights(str(vgg_file[0]))
    x = images(VGG_SHAPE, seed=3) * 100
    assert_endpoints_match(backbone, reference, {f"P{i}": f"block{i}_pool" for i in range(1, 6)}, x)


def test_tfseg_mobilenet_v2_features_equal_keras_applications(mobilenet_file, caplog):
    """DeepLab's MobileNetV2 (to layer_18) loads the keras file, Conv_1 left unused and logged as such."""
    mobilenet_v2 = _tfseg_builder("mobilenet_v2", "mobilenet_v2")
    backbone = mobilenet_v2(MOBILENET_SHAPE, alpha=MOBILENET_ALPHA)
    with caplog.at_level("INFO", logger="tfseg.backbones.weights"):
        loaded = W.load_imagenet_weights(backbone, mobilenet_file[0])
    assert "Conv_1" not in loaded and "Conv_1_bn" not in loaded and "block_16_project_BN" in loaded
    assert "['Conv_1', 'Conv_1_bn'] of the file left unused on purpose" in caplog.text
    assert "layer_18" in caplog.text
    reference = keras_mobilenet_v2()
    reference.load_weights(str(mobilenet_file[0]))
    x = images(MOBILENET_SHAPE, seed=4)
    endpoints = {
        "P2": "block_2_add", "P3": "block_5_add", "P4": "block_12_add", "P5": "block_16_project_BN",
        "block_2_depthwise_relu": "block_2_depthwise_relu",
    }
    assert_endpoints_match(backbone, reference, endpoints, x)

    with_last_conv = mobilenet_v2(MOBILENET_SHAPE, alpha=MOBILENET_ALPHA, include_last_conv=True)
    caplog.clear()
    with caplog.at_level("INFO", logger="tfseg.backbones.weights"):
        loaded = W.load_imagenet_weights(with_last_conv, mobilenet_file[0])
    assert {"Conv_1", "Conv_1_bn"} <= set(loaded) and "unused" not in caplog.text
    assert_endpoints_match(with_last_conv, reference, {"P5": "out_relu"}, x)


def test_only_the_declared_top_may_stay_unused(tmp_path, mobilenet_file):
    """Conv_1/Conv_1_bn are optional as a pair for MobileNetV2 only; any other extra layer still fails."""
    mobilenet_v2 = _tfseg_builder("mobilenet_v2", "mobilenet_v2")
    layers = W.read_legacy_h5_weights(mobilenet_file[0])
    extra = dict(layers, Conv_2=[("Conv_2/kernel:0", np.zeros((1, 1, 4, 4), "float32"))])
    with pytest.raises(W.WeightsMismatchError, match="layer 'Conv_2' of the file is not in the model"):
        W.load_imagenet_weights(mobilenet_v2(MOBILENET_SHAPE, alpha=MOBILENET_ALPHA), write_h5(tmp_path / "x.h5", extra))
    # Not declared for another backbone's table entry: the same file refuses to load as 'vgg16'.
    with pytest.raises(W.WeightsMismatchError, match="layer 'Conv_1' of the file is not in the model"):
        W.load_imagenet_weights(
            mobilenet_v2(MOBILENET_SHAPE, alpha=MOBILENET_ALPHA, name="other"), mobilenet_file[0], backbone="vgg16"
        )


# ---------------------------------------------------------------------------------------------
# Cache, download and hash checks (file:// URLs and pre-filled caches only)


def digest(path, algorithm):
    return hashlib.new(algorithm, path.read_bytes()).hexdigest()


@pytest.fixture
def small_file(mobilenet_file):
    """A small weight file (about 2 MB) to download and hash."""
    return mobilenet_file[0]


def patch_entry(monkeypatch, name, **changes):
    monkeypatch.setitem(W.IMAGENET_WEIGHTS, name, dataclasses.replace(W.IMAGENET_WEIGHTS[name], **changes))
    return W.IMAGENET_WEIGHTS[name]


def test_download_by_file_url_then_cache_hit(tmp_path, monkeypatch, small_file):
    entry = patch_entry(monkeypatch, "resnet50", url=small_file.as_uri(), file_hash=digest(small_file, "md5"))
    cache = tmp_path / "cache"
    path = W.weights_file("resnet50", cache_dir=cache)
    assert path == cache / entry.file_name and path.read_bytes() == small_file.read_bytes()
    assert [p.name for p in cache.iterdir()] == [entry.file_name]  # no partial file left behind

    # Cache hit: the URL is never touched.
    patch_entry(monkeypatch, "resnet50", url="http://127.0.0.1:9/never.h5")
    assert W.weights_file("resnet50", cache_dir=cache) == path
    monkeypatch.setenv(W.CACHE_ENV_VAR, str(cache))
    assert W.weights_file("resnet50") == path
    # A sha256 given by the user replaces the table's md5.
    assert W.weights_file("resnet50", cache_dir=cache, file_hash=digest(small_file, "sha256")) == path


def test_default_cache_is_keras_models_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(W.CACHE_ENV_VAR, raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert W.default_cache_dir() == tmp_path / "kh" / "models"
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert W.default_cache_dir() == tmp_path / ".keras" / "models"


def test_hash_mismatch_fails(tmp_path, monkeypatch, small_file):
    cache = tmp_path / "cache"
    entry = patch_entry(monkeypatch, "vgg16", url=small_file.as_uri(), file_hash="0" * 32)
    with pytest.raises(W.WeightsHashError, match="expected 00000000"):
        W.weights_file("vgg16", cache_dir=cache)
    assert not (cache / entry.file_name).exists()

    # A corrupt cached copy and no network: the error says both.
    (cache / entry.file_name).write_bytes(b"truncated")
    patch_entry(monkeypatch, "vgg16", url="http://127.0.0.1:9/vgg16.h5")
    with pytest.raises(W.WeightsUnavailableError, match="wrong md5 hash"):
        W.weights_file("vgg16", cache_dir=cache)

    # A corrupt cached copy is replaced when the download works.
    patch_entry(monkeypatch, "vgg16", url=small_file.as_uri(), file_hash=digest(small_file, "md5"))
    assert W.weights_file("vgg16", cache_dir=cache).read_bytes() == small_file.read_bytes()

    # A local file with a user-given hash is checked too.
    with pytest.raises(W.WeightsHashError):
        W.load_imagenet_weights(keras_mobilenet_v2(), small_file, file_hash="f" * 64)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/vgg16.h5", "https://tfseg-offline.invalid/vgg16.h5"])
def test_offline_fails_at_once_naming_url_and_cache_path(tmp_path, monkeypatch, url):
    entry = patch_entry(monkeypatch, "vgg16", url=url)
    cache = tmp_path / "offline-cache"
    start = time.monotonic()
    with pytest.raises(W.WeightsUnavailableError) as error:
        W.weights_file("vgg16", cache_dir=cache, timeout=3)
    assert time.monotonic() - start < 5
    message = str(error.value)
    assert url in message and str(cache / entry.file_name) in message and entry.file_hash in message


def test_file_without_published_hash_needs_a_decision(tmp_path, monkeypatch, small_file):
    entry = patch_entry(monkeypatch, "mobilenet_v2", url=small_file.as_uri())
    cache = tmp_path / "cache"
    with pytest.raises(W.WeightsHashError, match="none published.*allow_unverified=True"):
        W.weights_file("mobilenet_v2", cache_dir=cache)
    assert not cache.exists()
    with pytest.warns(UserWarning, match=digest(small_file, "sha256")):
        path = W.weights_file("mobilenet_v2", cache_dir=cache, allow_unverified=True)
    assert path == cache / entry.file_name
    assert W.weights_file("mobilenet_v2", cache_dir=cache, file_hash=digest(small_file, "sha256")) == path
    with pytest.raises(W.WeightsHashError):
        W.weights_file("mobilenet_v2", cache_dir=tmp_path / "other", file_hash="a" * 64)


def test_load_imagenet_by_backbone_name(tmp_path, monkeypatch, vgg_file):
    path, source_weights = vgg_file
    patch_entry(monkeypatch, "vgg16", url=path.as_uri(), file_hash=digest(path, "md5"))
    target = keras_vgg16()
    W.load_imagenet_weights(target, "imagenet", backbone="vgg16", cache_dir=tmp_path / "cache")
    for got, want in zip(all_weights(target), source_weights):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="which ImageNet weights"):
        W.load_imagenet_weights(keras_mobilenet_v2(), "imagenet", cache_dir=tmp_path / "cache")
