"""tfseg.backbones.official: official DeepLab checkpoints into tfseg models, every tensor checked.

The checkpoints are written by ``official_checkpoints`` from the official architecture, with
names and shapes enumerated there independently of the converter; the expected placement of
each tensor is that module's own mapping.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
import tarfile
import warnings

import numpy as np
import pytest
import tensorflow as tf

import official_checkpoints as oc
import tfseg
from tfseg.backbones import build_backbone
from tfseg.backbones import weights as W
from tfseg.backbones.xception import xception65
from tfseg.backbones import official

DECOYS = ("/Momentum", "/ExponentialMovingAverage", "global_step")
XCEPTION65_VOC_PARAMETERS = 41_258_213  # model.count_params(); the paper's "41.26M"
MOBILENET_V2_VOC_PARAMETERS = 2_146_645
IMAGENET_CLASSIFIER = ("xception_65/logits/biases", "xception_65/logits/weights")


def xception65_voc_model():
    """The official VOC configuration: output stride 16, separable ASPP 6/12/18, separable decoder."""
    return tfseg.build_model("deeplab_v3plus", 21, backbone="xception65", output_stride=16,
                             atrous_rates=(6, 12, 18), decoder=True, separable=True)


def mobilenet_v2_voc_model():
    """The official MobileNetV2 configuration: image pooling + 1x1 branch only, no decoder."""
    return tfseg.build_model("deeplab_v3plus", 21, backbone="mobilenet_v2", output_stride=16,
                             atrous_rates=(), decoder=False)


def image(size=65, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (1, size, size, 3)).astype("float32")


def assert_same_weights(got, want):
    assert len(got.weights) == len(want.weights)
    for a, b in zip(got.weights, want.weights):
        assert a.path == b.path
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def decoy_names(tensors):
    first, last = next(iter(tensors)), list(tensors)[-1]
    return sorted([f"{first}/Momentum", f"{last}/Momentum", f"{first}/ExponentialMovingAverage", "global_step"])


@pytest.fixture(scope="module")
def xception_voc(tmp_path_factory):
    tensors = oc.random_tensors(oc.deeplab_xception65_shapes(21), seed=1)
    prefix = oc.write_checkpoint(tmp_path_factory.mktemp("voc") / "model.ckpt", oc.with_decoys(tensors))
    return prefix, tensors


@pytest.fixture(scope="module")
def mobilenet_voc(tmp_path_factory):
    tensors = oc.random_tensors(oc.deeplab_mobilenet_v2_shapes(21), seed=2)
    folder = tmp_path_factory.mktemp("mnv2") / "deeplabv3_mnv2_pascal_train_aug"
    prefix = oc.write_checkpoint(folder / "model.ckpt-30000", oc.with_decoys(tensors))
    return prefix, tensors


@pytest.fixture(scope="module")
def imagenet_xception(tmp_path_factory):
    """The ImageNet Xception-65 checkpoint (classifier included) as a prefix and as an official-style tarball."""
    tensors = oc.random_tensors(oc.imagenet_xception65_shapes(), seed=3)
    folder = tmp_path_factory.mktemp("imagenet")
    prefix = oc.write_checkpoint(folder / "ckpt" / "model.ckpt", oc.with_decoys(tensors))
    tarball = oc.write_tarball(folder / W.IMAGENET_WEIGHTS["xception65"].file_name, tensors, folder="xception")
    return prefix, tensors, tarball, W.file_digest(tarball)


def backbone_tensors(tensors):
    return {name: value for name, value in tensors.items() if name not in IMAGENET_CLASSIFIER}


# --------------------------------------------------------------------------------------------
# Full models


def test_xception65_voc_checkpoint_converts_exactly(xception_voc):
    prefix, tensors = xception_voc
    converted = xception65_voc_model()
    report = official.load_official_checkpoint(converted, prefix)

    assert report.assigned == len(tensors) == len(converted.weights)
    assert report.parameters == converted.count_params() == XCEPTION65_VOC_PARAMETERS
    assert abs(report.parameters - 41.26e6) / 41.26e6 < 1e-3
    assert sorted(report.ignored) == decoy_names(tensors)
    assert set(official.official_variable_map(converted)) == set(tensors)

    expected = xception65_voc_model()
    oc.set_expected_weights(expected, tensors)
    assert_same_weights(converted, expected)
    x = image()
    got, want = converted(x, training=False).numpy(), expected(x, training=False).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert got.std() > 1e-2  # the comparison means something

    # Control: two same-shaped middle-flow tensors swapped changes the output, so the check can fail.
    layers = oc.all_layers(expected)
    a = layers["middle_flow_block1_unit1_sepconv1_pointwise"].kernel
    b = layers["middle_flow_block1_unit2_sepconv1_pointwise"].kernel
    va, vb = a.numpy(), b.numpy()
    a.assign(vb)
    b.assign(va)
    assert np.abs(expected(x, training=False).numpy() - got).max() > 1e-3


def test_mobilenet_v2_official_configuration_converts_exactly(mobilenet_voc):
    prefix, tensors = mobilenet_voc
    converted = mobilenet_v2_voc_model()
    names = set(oc.all_layers(converted))
    assert "aspp0" in names and "image_pooling" in names
    assert not {"aspp1_depthwise", "aspp1", "feature_projection0", "decoder_conv0_depthwise"} & names
    # The builder's defaults for mobilenet_v2 are this configuration.
    default = tfseg.build_model("deeplab_v3plus", 21, backbone="mobilenet_v2")
    assert set(official.official_variable_map(default)) == set(tensors)
    # Every official MobileNetV2 batch norm has a gamma (V2_DEF: scale=True), and the test wrote it.
    # Conv, 2 + 16 x 3 in the inverted residuals; image_pooling, aspp0, concat_projection.
    assert sum(name.endswith("/BatchNorm/gamma") for name in tensors) == 51 + 3

    report = official.load_official_checkpoint(converted, prefix)
    assert report.assigned == len(tensors) == len(converted.weights)
    assert report.parameters == converted.count_params() == MOBILENET_V2_VOC_PARAMETERS
    assert sorted(report.ignored) == decoy_names(tensors)
    assert str(report).startswith(f"{prefix}: {len(tensors)} variables")

    expected = mobilenet_v2_voc_model()
    oc.set_expected_weights(expected, tensors)
    assert_same_weights(converted, expected)
    x = image(seed=1)
    got = converted(x, training=False).numpy()
    np.testing.assert_allclose(got, expected(x, training=False).numpy(), atol=1e-5, rtol=0)
    assert got.std() > 1e-2
    # A folder holding the checkpoint works as well.
    again = mobilenet_v2_voc_model()
    official.load_official_checkpoint(again, prefix.parent)
    assert_same_weights(again, expected)


def test_zoo_card_loads_an_official_tarball(tmp_path, mobilenet_voc):
    """The zoo's official MobileNetV2 VOC card, given a local official-style tarball, goes through the converter."""
    _, tensors = mobilenet_voc
    tarball = oc.write_tarball(tmp_path / "deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz", oc.with_decoys(tensors),
                               folder="deeplabv3_mnv2_pascal_train_aug", checkpoint="model.ckpt-30000")
    model = tfseg.zoo.load("deeplabv3_mobilenet_v2_voc", weights=str(tarball))
    expected = mobilenet_v2_voc_model()
    oc.set_expected_weights(expected, tensors)
    assert_same_weights(model, expected)


def test_official_card_downloads_converts_once_and_reuses_the_conversion(tmp_path, monkeypatch, mobilenet_voc):
    """weights="pretrained" on an official card: get_file from the card's URL (here file://), sha256 pinned
    with weights_hash=, converted once; the second load uses the cached conversion (the tarball's
    checkpoint is no longer readable then)."""
    import hashlib
    import shutil

    import yaml

    from tfseg.zoo.cards import write_card
    from tfseg.zoo.download import cached_path

    _, tensors = mobilenet_voc
    (tmp_path / "served").mkdir()
    tarball = oc.write_tarball(tmp_path / "served" / "deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz",
                               oc.with_decoys(tensors), folder="deeplabv3_mnv2_pascal_train_aug",
                               checkpoint="model.ckpt-30000")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    zoo_copy = tmp_path / "zoo" / "deeplabv3_mobilenet_v2_voc"
    shutil.copytree(tfseg.zoo.cards.zoo_dir() / "deeplabv3_mobilenet_v2_voc", zoo_copy)
    card = yaml.safe_load((zoo_copy / "card.yaml").read_text())
    card["weights"]["url"] = tarball.as_uri()
    write_card(card, zoo_copy / "card.yaml")
    monkeypatch.setenv("TFSEG_ZOO_DIR", str(tmp_path / "zoo"))
    monkeypatch.setenv("TFSEG_CACHE_DIR", str(tmp_path / "cache"))
    expected = mobilenet_v2_voc_model()
    oc.set_expected_weights(expected, tensors)

    with pytest.raises(W.WeightsHashError, match="no sha256 is published"):
        tfseg.zoo.load("deeplabv3_mobilenet_v2_voc")
    assert_same_weights(tfseg.zoo.load("deeplabv3_mobilenet_v2_voc", weights_hash=digest), expected)
    downloaded = cached_path(card["weights"]["file_name"])
    conversions = list(downloaded.parent.glob("*.converted.npz"))
    assert downloaded.is_file() and len(conversions) == 1
    tarball.unlink()
    assert_same_weights(tfseg.zoo.load("deeplabv3_mobilenet_v2_voc", weights_hash=digest), expected)


# --------------------------------------------------------------------------------------------
# Mismatches fail before anything is assigned, naming every variable


def rewritten(tmp_path, tensors, drop=(), add=None, replace=None):
    tensors = {name: value for name, value in tensors.items() if name not in drop}
    tensors.update(add or {})
    tensors.update(replace or {})
    return oc.write_checkpoint(tmp_path / "model.ckpt", tensors)


def check_fails_untouched(model, prefix, *fragments):
    before = [w.numpy() for w in model.weights]
    with pytest.raises(W.WeightsMismatchError) as error:
        official.load_official_checkpoint(model, prefix)
    message = str(error.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    for weight, value in zip(model.weights, before):
        np.testing.assert_array_equal(weight.numpy(), value)
    return message


def test_any_optimizer_slot_under_a_mapped_variable_is_ignored_and_reported(tmp_path, mobilenet_voc, caplog):
    """RMSProp keeps two slots per variable (``/RMSProp``, ``/RMSProp_1``), as the ImageNet Xception-65 tarball's
    size suggests; slots of a variable the model does not have are still refused."""
    _, tensors = mobilenet_voc
    slots = {f"{name}/{slot}": np.zeros_like(value) for name, value in tensors.items() for slot in ("RMSProp", "RMSProp_1")}
    prefix = rewritten(tmp_path, tensors, add=slots)
    model = mobilenet_v2_voc_model()
    with caplog.at_level("INFO", logger="tfseg.backbones.official"):
        report = official.load_official_checkpoint(model, prefix)
    assert sorted(report.ignored) == sorted(slots) and report.assigned == len(tensors)
    assert f"{len(slots)} slots or shadows of mapped variables ['RMSProp', 'RMSProp_1']" in caplog.text
    expected = mobilenet_v2_voc_model()
    oc.set_expected_weights(expected, tensors)
    assert_same_weights(model, expected)
    orphan = rewritten(tmp_path / "orphan", tensors, add={"aspp1_depthwise/depthwise_weights/RMSProp": np.zeros(3, np.float32)})
    check_fails_untouched(mobilenet_v2_voc_model(), orphan, "1 checkpoint variables the model has no weight for",
                          "aspp1_depthwise/depthwise_weights/RMSProp (3,)")


def test_missing_variables_are_named_with_their_tfseg_weights(tmp_path, mobilenet_voc):
    _, tensors = mobilenet_voc
    drop = ("MobilenetV2/expanded_conv_3/project/BatchNorm/gamma", "logits/semantic/biases")
    prefix = rewritten(tmp_path, tensors, drop=drop)
    check_fails_untouched(mobilenet_v2_voc_model(), prefix, str(prefix), "2 model weights missing", *drop,
                          "mobilenet_v2/block_3_project_BN/gamma", "logits/bias")


def test_unknown_variables_are_named(tmp_path, mobilenet_voc):
    _, tensors = mobilenet_voc
    extra = {"aspp1_depthwise/depthwise_weights": np.zeros((3, 3, 320, 1), np.float32),
             "MobilenetV2/Conv_1/weights": np.zeros((1, 1, 320, 1280), np.float32)}
    prefix = rewritten(tmp_path, tensors, add=extra)
    check_fails_untouched(mobilenet_v2_voc_model(), prefix, "2 checkpoint variables the model has no weight for",
                          "aspp1_depthwise/depthwise_weights (3, 3, 320, 1)", "MobilenetV2/Conv_1/weights")


def test_wrong_shapes_are_named_with_both_shapes(tmp_path, mobilenet_voc):
    _, tensors = mobilenet_voc
    replace = {"logits/semantic/weights": np.zeros((1, 1, 256, 19), np.float32),
               "MobilenetV2/Conv/weights": np.zeros((3, 3, 3, 16), np.float32)}
    prefix = rewritten(tmp_path, tensors, replace=replace)
    check_fails_untouched(
        mobilenet_v2_voc_model(), prefix, "2 shape mismatches",
        "logits/semantic/weights (1, 1, 256, 19) in the checkpoint, (1, 1, 256, 21) for logits/kernel",
        "MobilenetV2/Conv/weights (3, 3, 3, 16) in the checkpoint, (3, 3, 3, 32) for mobilenet_v2/Conv1/kernel",
    )


def test_all_problems_are_reported_together(tmp_path, mobilenet_voc):
    _, tensors = mobilenet_voc
    prefix = rewritten(tmp_path, tensors, drop=("aspp0/weights",), add={"mystery": np.zeros(3, np.float32)},
                       replace={"aspp0/BatchNorm/beta": np.zeros(7, np.float32)})
    check_fails_untouched(mobilenet_v2_voc_model(), prefix, "aspp0/weights (-> aspp0/kernel)", "mystery (3,)",
                          "aspp0/BatchNorm/beta (7,) in the checkpoint, (256,) for aspp0_bn/beta")


def test_no_checkpoint_there(tmp_path):
    with pytest.raises(FileNotFoundError, match="no TensorFlow checkpoint at .*nothing"):
        official.load_official_checkpoint(mobilenet_v2_voc_model(), tmp_path / "nothing")


def test_models_outside_the_official_layout_are_refused():
    with pytest.raises(ValueError, match="neither a tfseg Xception / MobileNetV2 backbone"):
        official.official_variable_map(tfseg.build_model("unet", 2, (64, 64, 3)))
    # The official decoder is separable; a plain-conv decoder has no official names.
    plain = tfseg.build_model("deeplab_v3plus", 21, backbone="mobilenet_v2", decoder=True, separable=False)
    with pytest.raises(ValueError, match=r"10 weights without an official name \[decoder_conv0/kernel, "
                                         r"decoder_conv0_bn/gamma"):
        official.official_variable_map(plain)


# --------------------------------------------------------------------------------------------
# The ImageNet Xception-65 checkpoint into the bare backbone


def test_bare_xception65_backbone_from_the_imagenet_checkpoint(imagenet_xception):
    prefix, tensors, _, _ = imagenet_xception
    converted = xception65()
    report = official.load_official_checkpoint(converted, prefix)
    assert sorted(report.ignored) == sorted([*decoy_names(tensors), *IMAGENET_CLASSIFIER])
    assert report.assigned == len(tensors) - 2 == len(converted.weights)
    assert report.parameters == converted.count_params()

    expected = xception65()
    oc.set_expected_weights(expected, backbone_tensors(tensors))
    assert_same_weights(converted, expected)
    x = image(seed=2) / 127.5 - 1
    got, want = converted(x)["P5"].numpy(), expected(x)["P5"].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert got.std() > 1e-2

    # The classifier is ignored only for a bare backbone: a DeepLab model lacks its head weights and
    # has no place for the classifier.
    with pytest.raises(W.WeightsMismatchError) as error:
        official.load_official_checkpoint(xception65_voc_model(), prefix)
    message = str(error.value)
    assert "72 model weights missing" in message and "... and" not in message
    assert "aspp0/weights (-> aspp0/kernel)" in message and "logits/semantic/weights (-> logits/kernel)" in message
    assert "xception_65/logits/weights (1, 1, 2048, 1001)" in message


# A full Xception-65 DeepLab (14 s); the card path is also taken by test_zoo_card_loads_an_official_tarball.
@pytest.mark.slow
def test_imagenet_card_loads_the_backbone_only(imagenet_xception):
    """The zoo's ImageNet Xception-65 card: the backbone from the tarball, the head as built, any class count."""
    _, tensors, tarball, _ = imagenet_xception
    model = tfseg.zoo.load("deeplabv3plus_xception65_imagenet", weights=str(tarball), num_classes=5,
                           input_shape=(65, 65, 3))
    assert model.output_shape[-1] == 5
    expected = xception65()
    oc.set_expected_weights(expected, backbone_tensors(tensors))
    assert_same_weights(official.official_backbone(model), expected)


# --------------------------------------------------------------------------------------------
# Tarballs


def test_find_checkpoint_in_an_extracted_tarball(tmp_path):
    tensors = {"aspp0/weights": np.ones((1, 1, 4, 2), np.float32)}
    tarball = oc.write_tarball(tmp_path / "official.tar.gz", tensors, folder="deeplabv3_mnv2_pascal_train_aug",
                               checkpoint="model.ckpt-30000")
    dest = official.extract_tarball(tarball, tmp_path / "extracted")
    prefix = official.find_checkpoint(dest)
    assert prefix == str(tmp_path / "extracted" / "deeplabv3_mnv2_pascal_train_aug" / "model.ckpt-30000")
    stored = tf.train.load_checkpoint(prefix).get_tensor("aspp0/weights")
    np.testing.assert_array_equal(stored, tensors["aspp0/weights"])
    assert (dest / "deeplabv3_mnv2_pascal_train_aug" / "frozen_inference_graph.pb").read_bytes() == b"not a graph"

    oc.write_checkpoint(dest / "other" / "model.ckpt", tensors)
    with pytest.raises(ValueError, match="several checkpoints.*model.ckpt-30000.*other/model.ckpt"):
        official.find_checkpoint(dest)
    shutil.rmtree(dest / "other")
    (dest / "deeplabv3_mnv2_pascal_train_aug" / "model.ckpt-30000.data-00000-of-00001").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete.*model.ckpt-30000.*frozen_inference_graph.pb"):
        official.find_checkpoint(dest)


def add_member(archive, name, data=b"x", kind=tarfile.REGTYPE, target=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, target, len(data) if kind == tarfile.REGTYPE else 0
    archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def test_extract_tarball_refuses_paths_outside_the_destination(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as archive:
        add_member(archive, "model/model.ckpt.index")
        add_member(archive, "../evil")
        add_member(archive, "model/../../evil2")
        add_member(archive, "/tmp/absolute_evil")
        add_member(archive, "model/link", kind=tarfile.SYMTYPE, target="/etc/passwd")
    dest = tmp_path / "dest"
    with pytest.raises(ValueError) as error:
        official.extract_tarball(evil, dest)
    message = str(error.value)
    for name in ("../evil", "model/../../evil2", "/tmp/absolute_evil", "model/link"):
        assert name in message
    assert "model/model.ckpt.index" not in message
    assert not dest.exists() and not (tmp_path / "evil").exists() and not (tmp_path / "evil2").exists()

    (tmp_path / "plain.txt").write_text("not a tarball")
    with pytest.raises(ValueError, match="plain.txt is not a readable tar archive"):
        official.extract_tarball(tmp_path / "plain.txt", dest)


# --------------------------------------------------------------------------------------------
# backbone_weights="imagenet" for Xception-65: the official tarball, converted once and cached


def patch_xception_entry(monkeypatch, url):
    entry = dataclasses.replace(W.IMAGENET_WEIGHTS["xception65"], url=url)
    monkeypatch.setitem(W.IMAGENET_WEIGHTS, "xception65", entry)


def assert_backbone_holds(model, tensors):
    expected = xception65()
    oc.set_expected_weights(expected, backbone_tensors(tensors))
    backbone = model if model.name == "xception65" else model.get_layer("xception65")
    assert_same_weights(backbone, expected)


def test_xception65_entry_is_the_model_zoo_tarball():
    entry = W.IMAGENET_WEIGHTS["xception65"]
    assert entry.url == "http://download.tensorflow.org/models/deeplabv3_xception_2018_01_04.tar.gz"
    assert entry.url.endswith("/" + entry.file_name) and entry.format == "official_deeplab_tarball"
    assert entry.file_hash is None and "none published" in entry.hash_source


def test_xception65_imagenet_from_a_prefilled_cache(tmp_path, monkeypatch, imagenet_xception):
    _, tensors, tarball, sha256 = imagenet_xception
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(tarball, cache / tarball.name)
    monkeypatch.setenv(W.CACHE_ENV_VAR, str(cache))
    patch_xception_entry(monkeypatch, "http://127.0.0.1:9/never.tar.gz")  # never downloaded

    with pytest.raises(W.WeightsHashError, match="none published.*allow_unverified=True"):
        build_backbone("xception65", weights="imagenet")
    model = tfseg.build_model("deeplab_v3plus", 21, backbone="xception65", backbone_weights="imagenet",
                              backbone_weights_hash=sha256)
    assert_backbone_holds(model, tensors)
    converted = cache / f"deeplabv3_xception_2018_01_04.{sha256[:16]}.converted.npz"
    assert sorted(p.name for p in cache.iterdir()) == sorted([tarball.name, converted.name])  # no leftovers
    assert set(np.load(converted).files) == set(backbone_tensors(tensors))

    # Later loads use the converted file: no extraction.
    def no_extraction(*args):
        raise AssertionError("the tarball was extracted again")

    monkeypatch.setattr(official, "extract_tarball", no_extraction)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = build_backbone("xception65", output_stride=8, weights="imagenet", allow_unverified_weights=True)
    assert any(sha256 in str(w.message) for w in caught)
    assert_backbone_holds(again, tensors)

    # A damaged converted file is reported, naming it.
    converted.write_bytes(converted.read_bytes()[:1000])
    with pytest.raises(W.WeightsMismatchError, match=f"{converted.name} .*delete that file"):
        build_backbone("xception65", weights="imagenet", weights_hash=sha256)


@pytest.mark.slow  # the cache and hash path is also taken by test_zoo's card download test
def test_xception65_imagenet_download_by_file_url_and_hash_check(tmp_path, monkeypatch, imagenet_xception):
    _, tensors, tarball, sha256 = imagenet_xception
    cache = tmp_path / "cache"
    monkeypatch.setenv(W.CACHE_ENV_VAR, str(cache))
    patch_xception_entry(monkeypatch, tarball.as_uri())

    with pytest.raises(W.WeightsHashError, match=f"expected {'0' * 64}.*discarded"):
        build_backbone("xception65", weights="imagenet", weights_hash="0" * 64)
    assert list(cache.iterdir()) == []  # the fresh download was deleted

    model = xception65()
    loaded = W.load_imagenet_weights(model, "imagenet", backbone="xception65", file_hash=sha256)
    assert loaded[0] == "entry_flow_conv1_1" and loaded == [layer.name for layer in model.layers if layer.weights]
    assert (cache / tarball.name).read_bytes() == tarball.read_bytes()
    assert_backbone_holds(model, tensors)

    # A local tarball path works too; the converted file goes to the cache folder.
    local = build_backbone("xception65", weights=str(tarball))
    assert_backbone_holds(local, tensors)
