"""The zoo: every entry has a valid card, our files are pinned, loading works offline, fine-tuning keeps weights."""

from __future__ import annotations

import hashlib
import io
import shutil
import sys
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import yaml

import tfseg
from tfseg import cli, zoo
from tfseg.backbones.weights import WeightsHashError, WeightsUnavailableError
from tfseg.zoo.cards import CARD_FILE, CardError, read_card, write_card
from tfseg.zoo.download import cached_path, fetch

ZOO = Path(__file__).resolve().parents[1] / "zoo"
SAMPLES = "samples"  # zoo/samples: the CamVid images tfseg demo segments, not a model
ENTRIES = sorted(p.name for p in ZOO.iterdir() if p.is_dir() and p.name != SAMPLES)
CAMVID_CARDS = sorted(n for n in ENTRIES if n.startswith("camvid_"))
WEIGHT_SUFFIXES = (".h5", ".keras", ".tflite", ".npz", ".ckpt", ".index", ".pb")


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ENTRIES)
def test_every_zoo_folder_has_a_valid_card(name):
    card = read_card(ZOO / name / CARD_FILE)
    assert card.name == name
    assert len(card.class_names) == card.num_classes == len(card.palette)


def test_every_file_of_ours_is_pinned_by_its_card():
    pinned = {}
    for name in ENTRIES:
        card = zoo.card(name)
        if card.local_weights() is not None:
            pinned[card.local_weights().resolve()] = card.weights["sha256"]
    files = [p.resolve() for p in ZOO.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)]
    assert files, "no weight files found under zoo/"
    unpinned = [str(p) for p in files if p not in pinned]
    assert not unpinned, f"weight files without a card's sha256: {unpinned}"
    for path, digest in pinned.items():
        assert sha256(path) == digest, path
        assert path.stat().st_size < 10e6, f"{path} is {path.stat().st_size / 1e6:.1f} MB"


def test_at_most_five_sample_images_with_their_citation():
    images = [p for p in (ZOO / SAMPLES).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")]
    assert 1 <= len(images) <= 5
    readme = (ZOO / SAMPLES / "README.md").read_text()
    assert "Brostow" in readme and all(p.name in readme for p in images)


def test_zoo_list_and_cli_show_every_card():
    assert zoo.list() == ENTRIES
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["zoo", "list"]) == 0
    listing = out.getvalue()
    for name in ENTRIES:
        assert f"| {name} |" in listing
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["zoo", "show", CAMVID_CARDS[0]]) == 0
    assert yaml.safe_load(out.getvalue())["name"] == CAMVID_CARDS[0]


def _card_copy(tmp_path, name, **changes):
    folder = tmp_path / "zoo" / name
    shutil.copytree(ZOO / name, folder)
    data = yaml.safe_load((folder / CARD_FILE).read_text())
    for key, value in changes.items():
        data[key] = value
    write_card(data, folder / CARD_FILE)
    return folder / CARD_FILE


def test_a_bad_card_is_refused_naming_the_problem(tmp_path):
    name = CAMVID_CARDS[0]
    options = dict(zoo.card(name).options, frobnicate=3)
    with pytest.raises(CardError, match=r"frobnicate.*not options of"):
        read_card(_card_copy(tmp_path / "a", name, options=options))
    weights = dict(zoo.card(name).weights)
    del weights["sha256"]
    with pytest.raises(CardError, match="has no sha256"):
        read_card(_card_copy(tmp_path / "b", name, weights=weights))
    with pytest.raises(CardError, match="unknown keys"):
        read_card(_card_copy(tmp_path / "c", name, colour="red"))
    with pytest.raises(CardError, match="class names for num_classes"):
        read_card(_card_copy(tmp_path / "d", name, classes=["sky"]))
    with pytest.raises(CardError, match=r"crf_fast must be the fast mode's parameters \(downsample > 1\)"):
        read_card(_card_copy(tmp_path / "e", name, crf_fast={"iterations": 3}))
    with pytest.raises(CardError, match=r"crf must be the exact mode's parameters"):
        read_card(_card_copy(tmp_path / "f", name, crf={"downsample": 4}))
    with pytest.raises(CardError, match="crf_fast parameters are not DenseCRF options: downsample"):
        read_card(_card_copy(tmp_path / "g", name, crf_fast={"downsample": 0}))


def test_unknown_zoo_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=CAMVID_CARDS[0]):
        zoo.load("no_such_model")


def _camvid_val(count):
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource

    source = ExampleSource(open_dataset("camvid"), "val", limit=count)
    images = np.stack([source[i][0] for i in range(len(source))])
    labels = np.stack([source[i][1] for i in range(len(source))])
    return images, labels


@pytest.mark.parametrize("name", CAMVID_CARDS)
def test_camvid_zoo_model_loads_offline_and_segments_val(name):
    from tfseg.metrics import confusion_matrix, scores_from_confusion

    model = zoo.load(name)
    images, labels = _camvid_val(3)
    logits = model.predict(images.astype("float32"), verbose=0)
    scores = scores_from_confusion(confusion_matrix(labels, logits, 11, ignore_label=11))
    # An untrained model scores about 1/11 here; the card's full-val figure is checked by the slow test.
    # On these 3 images each model stays within 5 points of its card's full-val pixel accuracy and
    # 6 points of its mean IoU (measured: 0.5-3.9 and 0.8-4.6 points).
    card = zoo.card(name)
    for metric, card_metric, tolerance in (("pixel_accuracy", "val_pixel_accuracy", 5),
                                           ("mean_iou", "val_mean_iou", 6)):
        measured = 100 * float(scores[metric])
        assert measured > card.measured(card_metric) - tolerance, (metric, measured, card.measured(card_metric))
    # tfseg.predict takes the zoo name and gives the same labels.
    assert np.array_equal(tfseg.predict(name, images[0]), logits[0].argmax(-1))


@pytest.mark.slow
@pytest.mark.parametrize("name", CAMVID_CARDS)
def test_camvid_zoo_model_reproduces_its_card_on_full_val(name):
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource
    from tfseg.training.evaluate import evaluate_source

    card = zoo.card(name)
    result = evaluate_source(zoo.load(name), ExampleSource(open_dataset("camvid"), "val").load_all(), batch_size=2)
    measured = 100 * float(result.scores["mean_iou"])
    assert abs(measured - card.measured("val_mean_iou")) <= 0.5, (measured, card.measured("val_mean_iou"))


def test_fine_tuning_to_other_classes_keeps_every_non_head_weight_and_trains():
    import keras

    from tfseg.zoo.transfer import weighted_layers

    name = "camvid_deeplab_v3plus_mobilenet_v2"
    pretrained = zoo.load(name)
    tuned = zoo.load(name, num_classes=4)
    assert tuned.output_shape[-1] == 4
    before = weighted_layers(pretrained)
    replaced = []
    for layer_name, layer in weighted_layers(tuned).items():
        same = all(np.array_equal(a, b) for a, b in zip(layer.get_weights(), before[layer_name].get_weights()))
        if not same:
            replaced.append(layer_name)
    assert replaced == ["logits"]
    kept = sum(int(np.prod(w.shape)) for n, layer in weighted_layers(tuned).items() if n != "logits" for w in layer.weights)
    assert kept == pretrained.count_params() - 256 * 11 - 11

    tuned.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, labels = _camvid_val(2)
    labels = np.where(labels == 11, 0, labels % 4)
    head = tuned.get_layer("logits").get_weights()[0].copy()
    losses = [float(tuned.train_on_batch(images[:, :128, :160].astype("float32"), labels[:, :128, :160]))
              for _ in range(3)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    assert not np.array_equal(head, tuned.get_layer("logits").get_weights()[0])


def test_random_weights_and_a_local_weights_file(tmp_path):
    name = CAMVID_CARDS[0]
    pretrained = zoo.load(name)
    path = tmp_path / "mine.weights.h5"
    pretrained.save_weights(path)
    local = zoo.load(name, weights=str(path))
    for a, b in zip(pretrained.weights, local.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    fresh = zoo.load(name, weights=None)
    assert not np.array_equal(fresh.get_layer("logits").get_weights()[0], pretrained.get_layer("logits").get_weights()[0])
    with pytest.raises(FileNotFoundError, match="nope.weights.h5"):
        zoo.load(name, weights=str(tmp_path / "nope.weights.h5"))


# Downloads: keras.utils.get_file with file:// URLs, offline.

def _payload(tmp_path, content=b"tfseg weights\n"):
    path = tmp_path / "served" / "file.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path, hashlib.sha256(content).hexdigest()


def test_fetch_verifies_sha256_and_reuses_the_cache(tmp_path):
    served, digest = _payload(tmp_path)
    cache = tmp_path / "cache"
    got = fetch(served.as_uri(), "file.bin", digest, cache_dir=cache)
    assert got == cached_path("file.bin", cache) and got.read_bytes() == served.read_bytes()
    served.unlink()  # the verified cached copy is used without the network
    assert fetch(served.as_uri(), "file.bin", digest, cache_dir=cache) == got


def test_fetch_deletes_a_fresh_download_with_the_wrong_hash(tmp_path):
    served, _ = _payload(tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(WeightsHashError, match="deleted"):
        fetch(served.as_uri(), "file.bin", "0" * 64, cache_dir=cache)
    assert not cached_path("file.bin", cache).exists()


def test_fetch_replaces_a_cached_file_with_the_wrong_hash(tmp_path):
    served, digest = _payload(tmp_path)
    cache = tmp_path / "cache"
    stale = cached_path("file.bin", cache)
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"corrupt")
    assert fetch(served.as_uri(), "file.bin", digest, cache_dir=cache).read_bytes() == served.read_bytes()


def test_fetch_offline_names_the_url_and_the_path(tmp_path):
    url = "http://tfseg-weights.invalid/model.weights.h5"
    with pytest.raises(WeightsUnavailableError) as error:
        fetch(url, "model.weights.h5", "0" * 64, cache_dir=tmp_path, timeout=2)
    assert url in str(error.value) and str(cached_path("model.weights.h5", tmp_path)) in str(error.value)


def test_fetch_without_a_published_hash_needs_consent(tmp_path):
    served, digest = _payload(tmp_path)
    with pytest.raises(WeightsHashError, match="allow_unverified"):
        fetch(served.as_uri(), "file.bin", None, cache_dir=tmp_path / "cache")
    with pytest.warns(UserWarning, match=digest):
        fetch(served.as_uri(), "file.bin", None, cache_dir=tmp_path / "cache", allow_unverified=True)


def test_load_downloads_a_card_url_through_the_cache(tmp_path, monkeypatch):
    """A card whose weights are a URL: downloaded once, verified, loaded; a wrong pin is refused."""
    name = CAMVID_CARDS[0]
    served = tmp_path / "served" / "model.weights.h5"
    served.parent.mkdir()
    shutil.copy(ZOO / name / "model.weights.h5", served)
    card_path = _card_copy(tmp_path, name)
    (card_path.parent / "model.weights.h5").unlink()
    data = yaml.safe_load(card_path.read_text())
    data["weights"] = {"format": "keras_weights_h5", "url": served.as_uri(), "file_name": "camvid_test.weights.h5",
                       "sha256": sha256(served), "licence": "test"}
    write_card(data, card_path)
    monkeypatch.setenv("TFSEG_ZOO_DIR", str(tmp_path / "zoo"))
    monkeypatch.setenv("TFSEG_CACHE_DIR", str(tmp_path / "cache"))
    downloaded = zoo.load(name)
    assert cached_path("camvid_test.weights.h5").is_file()
    reference = tfseg.build_model(data["builder"], 11, **data["options"])
    reference.load_weights(ZOO / name / "model.weights.h5")
    for a, b in zip(reference.weights, downloaded.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(WeightsHashError):
        zoo.load(name, weights_hash="1" * 64)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
