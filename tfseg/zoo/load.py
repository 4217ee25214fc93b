"""``tfseg.zoo.load``: a zoo name gives a Keras model with its pretrained weights.

As ``keras.applications`` and keras-hub's ``from_preset``: the card names the builder and its
options, the weights come from the card's folder (sha256 checked) or from the card's URL through
the Keras cache; official DeepLab checkpoints are converted once and the converted weights kept
in the cache beside the download. ``num_classes`` other than the card's gives the same model
with a new classifier and every other weight kept: the fine-tuning path. The model carries the
card's ``ModelInfo`` (classes, palette, input protocol: ``tfseg.inference.metadata``), which
``tfseg.predict``, ``tfseg eval`` and the exports follow.
"""

from __future__ import annotations

import logging
from pathlib import Path

from tfseg.zoo.cards import get_card, list_cards

logger = logging.getLogger(__name__)
WEIGHTS_CHOICES = "'pretrained', None or a path"


def list_models():
    """Names of every zoo entry (one per card under ``zoo/``)."""
    return list_cards()


def card(name):
    """The card of ``name``: builder, options, classes, palette, weights, figures, CRF parameters."""
    return get_card(name)


def load(name, *, weights="pretrained", num_classes=None, input_shape=(None, None, 3), weights_hash=None,
         allow_unverified=False, cache_dir=None):
    """The zoo model ``name`` as a ``keras.Model`` from uint8-range RGB images to logits.

    ``weights``: ``"pretrained"`` (the card's weights), ``None`` (random initialisation) or a
    local file (a ``.weights.h5`` for the card's architecture, or the official tarball /
    checkpoint for official DeepLab cards). ``num_classes``: a different class count replaces
    the classifier (initialised as the builder does) and keeps every other weight.
    ``weights_hash`` pins a download whose card has no published sha256; ``allow_unverified``
    uses such a file with a warning that prints its sha256.
    """
    from tfseg.registry import build_model

    zoo_card = get_card(name)
    if not (weights is None or weights == "pretrained" or isinstance(weights, (str, Path))):
        raise TypeError(f"weights must be {WEIGHTS_CHOICES}; got {weights!r}")
    if num_classes is not None and (int(num_classes) != num_classes or num_classes < 1):
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    model = build_model(zoo_card.builder, zoo_card.num_classes, input_shape, **zoo_card.options)
    if weights is not None:
        if weights == "pretrained":
            if not zoo_card.weights:
                raise ValueError(f"zoo model {name!r} has no pretrained weights on its card; use weights=None")
            _load_pretrained(model, zoo_card, weights_hash, allow_unverified, cache_dir)
        else:
            _load_local(model, zoo_card, Path(weights))
    from tfseg.inference.metadata import ModelInfo, attach

    info = ModelInfo.from_card(zoo_card)
    if num_classes is None or int(num_classes) == zoo_card.num_classes:
        return attach(model, info)
    from tfseg.zoo.transfer import transfer_weights

    target = build_model(zoo_card.builder, int(num_classes), input_shape, **zoo_card.options)
    replaced = transfer_weights(model, target)
    logger.info("%s: new classifier for %d classes in layers %s", name, num_classes, replaced)
    return attach(target, ModelInfo(protocol=info.protocol, source=info.source))  # the classes are the caller's


def _load_pretrained(model, zoo_card, weights_hash, allow_unverified, cache_dir):
    from tfseg.zoo.download import check_local_file, fetch

    spec = zoo_card.weights
    if spec.get("file"):
        path = check_local_file(zoo_card.local_weights(), spec["sha256"], f"zoo model {zoo_card.name}")
        model.load_weights(path)
        return
    sha256 = (weights_hash or spec.get("sha256") or None)
    path = fetch(spec["url"], spec["file_name"], sha256, cache_dir=cache_dir, allow_unverified=allow_unverified)
    _load_file(model, zoo_card, path)


def _load_local(model, zoo_card, path):
    if not path.exists():
        raise FileNotFoundError(f"weights={str(path)!r}: no such file or folder")
    _load_file(model, zoo_card, path)


def _load_file(model, zoo_card, path):
    if path.is_file() and path.name.endswith(".h5"):
        model.load_weights(path)
    elif zoo_card.weights.get("format") == "official_deeplab_checkpoint":
        load_official(model, path, backbone_only=zoo_card.weights.get("part") == "backbone")
    else:
        raise ValueError(f"{path}: zoo model {zoo_card.name} takes a .weights.h5 file")


def load_official(model, path, backbone_only=False):
    """Weights of an official DeepLab tarball, extracted folder or checkpoint prefix into ``model``.

    A tarball is converted once; the converted weights are cached beside it (``official.load_tarball``).
    ``backbone_only``: an ImageNet backbone checkpoint, loaded into the model's backbone (the rest
    keeps its initialisation).
    """
    from tfseg.backbones.official import find_checkpoint, load_official_checkpoint, load_tarball, official_backbone

    path = Path(path)
    if backbone_only:
        model = official_backbone(model)
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz", ".tar")):
        load_tarball(model, path, path.parent)
        return
    load_official_checkpoint(model, find_checkpoint(path) if path.is_dir() else str(path))
