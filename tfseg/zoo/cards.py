"""Model cards: one YAML file per zoo entry, ``zoo/<name>/card.yaml``, read and checked here.

A card is data, not code (the keras-hub preset and timm pretrained-config idea): the
``tfseg.build_model`` name and options, the dataset with its class names and palette, where the
preprocessing happens, the input size, how the model is fed (``protocol``: the official DeepLab
evaluation pads to a canvas, and resizes ADE20K images first; ``tfseg.inference.protocol``), the
weights (a file in the card's folder or a URL, with its sha256 and licence), the figures published
by the model's authors with their source, the figures measured by this project with the command
that produced them, and the dense-CRF parameters tuned for the model.

The zoo folder is ``$TFSEG_ZOO_DIR`` or the ``zoo/`` folder beside the ``tfseg`` package.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

ZOO_ENV_VAR = "TFSEG_ZOO_DIR"
CARD_FILE = "card.yaml"
WEIGHT_FORMATS = ("keras_weights_h5", "official_deeplab_checkpoint")
REQUIRED_KEYS = ("name", "title", "builder", "num_classes", "options", "dataset", "classes", "palette",
                 "preprocessing", "input_size", "weights")
OPTIONAL_KEYS = ("paper", "parameters", "protocol", "crf", "crf_tuning", "crf_fast", "crf_fast_tuning", "published", "measured", "training", "notes")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class CardError(ValueError):
    """A card that is missing, unreadable or inconsistent; the message names the file and the key."""


def zoo_dir():
    """``$TFSEG_ZOO_DIR``, else the repository's ``zoo/`` folder."""
    if os.environ.get(ZOO_ENV_VAR):
        return Path(os.environ[ZOO_ENV_VAR]).expanduser()
    return Path(__file__).resolve().parents[2] / "zoo"


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """A checked card; ``data`` is the YAML mapping as written, ``folder`` holds its files."""

    path: Path
    data: dict

    @property
    def name(self):
        return self.data["name"]

    @property
    def title(self):
        return self.data["title"]

    @property
    def folder(self):
        return self.path.parent

    @property
    def builder(self):
        return self.data["builder"]

    @property
    def num_classes(self):
        return int(self.data["num_classes"])

    @property
    def options(self):
        return dict(self.data["options"] or {})

    @property
    def class_names(self):
        return tuple(self.data["classes"])

    @property
    def palette(self):
        import numpy as np

        return np.array(self.data["palette"], np.uint8)

    @property
    def weights(self):
        return dict(self.data["weights"] or {})

    @property
    def crf(self):
        """Dense-CRF parameters tuned for this model (``tfseg.layers.DenseCRF`` options) or None."""
        return dict(self.data["crf"]) if self.data.get("crf") else None

    @property
    def crf_fast(self):
        """The fast mode's DenseCRF options tuned for this model (``downsample`` > 1) or None."""
        return dict(self.data["crf_fast"]) if self.data.get("crf_fast") else None

    def crf_options(self, mode="exact"):
        """DenseCRF options of ``mode`` ("exact" or "fast"): the card's tuned ones, else tfseg's for that mode."""
        from tfseg.layers.dense_crf import crf_mode_options

        defaults = crf_mode_options(mode)
        tuned = self.crf_fast if mode == "fast" else self.crf
        return tuned if tuned is not None else defaults

    @property
    def protocol(self):
        """How the model is fed (``tfseg.inference.protocol.InputProtocol``); the whole image when unset."""
        from tfseg.inference.protocol import InputProtocol

        return InputProtocol.from_dict(self.data.get("protocol"), f"{self.path}: protocol")

    @property
    def input_size(self):
        return tuple(self.data["input_size"])

    def local_weights(self):
        """Path of the weight file shipped in the card's folder, or None for a downloaded one."""
        file = self.weights.get("file")
        return self.folder / file if file else None

    def recipe_file(self):
        """Path of the training config that produced the weights (``training.config``), or None."""
        config = (self.data.get("training") or {}).get("config")
        return self.folder / config if config else None

    def measured(self, metric):
        """The value of a measured figure (e.g. ``"val_mean_iou"``), or None."""
        for entry in self.data.get("measured") or ():
            if entry.get("metric") == metric:
                return entry["value"]
        return None


def read_card(path):
    """Read and check one card file; raises ``CardError`` naming the file and the key."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CardError(f"{path}: cannot read the card: {error}") from error
    if not isinstance(data, dict):
        raise CardError(f"{path}: a card is a YAML mapping, got {type(data).__name__}")
    check_card(data, path)
    return ModelCard(path, data)


def check_card(data, path):
    """Every problem of a card at once: keys, builder options, classes/palette, weights, figures."""
    from tfseg.registry import list_models, model_options

    problems = []
    missing = [key for key in REQUIRED_KEYS if key not in data]
    unknown = sorted(set(data) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if missing:
        problems.append(f"missing keys {missing}")
    if unknown:
        problems.append(f"unknown keys {unknown} (valid: {list(REQUIRED_KEYS + OPTIONAL_KEYS)})")
    if missing:
        raise CardError(f"{path}: " + "; ".join(problems))
    if data["name"] != Path(path).parent.name:
        problems.append(f"name {data['name']!r} differs from its folder {Path(path).parent.name!r}")
    if data["builder"] not in list_models():
        problems.append(f"builder {data['builder']!r} is not a tfseg model ({', '.join(list_models())})")
    else:
        valid = model_options(data["builder"])
        bad = sorted(set(data["options"] or {}) - set(valid))
        if bad:
            problems.append(f"options {bad} are not options of {data['builder']} (valid: {sorted(valid)})")
    classes = data["num_classes"]
    if not isinstance(classes, int) or classes < 1:
        problems.append(f"num_classes must be a positive int, got {classes!r}")
    elif len(data["classes"]) != classes:
        problems.append(f"{len(data['classes'])} class names for num_classes {classes}")
    palette = data["palette"]
    if not isinstance(palette, list) or len(palette) != classes or any(
        not isinstance(c, list) or len(c) != 3 or any(not 0 <= v <= 255 for v in c) for c in palette
    ):
        problems.append(f"palette must be num_classes ({classes}) [r, g, b] triples in 0..255")
    size = data["input_size"]
    if not isinstance(size, list) or len(size) != 2 or any(not isinstance(s, int) or s < 1 for s in size):
        problems.append(f"input_size must be [height, width], got {size!r}")
    problems += _weights_problems(data["weights"], Path(path).parent)
    if data.get("protocol") is not None:
        from tfseg.inference.protocol import InputProtocol

        try:
            InputProtocol.from_dict(data["protocol"])
        except (TypeError, ValueError) as error:
            problems.append(str(error))
    options = (data["dataset"] or {}).get("reader_options") if isinstance(data["dataset"], dict) else None
    if options is not None and not isinstance(options, dict):
        problems.append(f"dataset.reader_options must be a mapping of reader options, got {options!r}")
    for section in ("published", "measured"):
        for entry in data.get(section) or ():
            need = ("metric", "value", "source") if section == "published" else ("metric", "value", "command")
            if not isinstance(entry, dict) or any(k not in entry for k in need):
                problems.append(f"every '{section}' entry needs {list(need)}, got {entry!r}")
    for key, mode in (("crf", "exact"), ("crf_fast", "fast")):
        if data.get(key) is None:
            continue
        from tfseg.layers.dense_crf import DenseCRF

        try:
            layer = DenseCRF(**data[key])
        except (TypeError, ValueError) as error:
            problems.append(f"{key} parameters are not DenseCRF options: {error}")
            continue
        if layer.mode != mode:
            problems.append(f"{key} must be the {mode} mode's parameters (downsample {'> 1' if mode == 'fast' else '1'}); "
                            f"got downsample {layer.downsample}")
    if problems:
        raise CardError(f"{path}: " + "; ".join(problems))


def _weights_problems(weights, folder):
    if weights is None:
        return []  # an architecture card without pretrained weights
    problems = []
    if weights.get("format") not in WEIGHT_FORMATS:
        problems.append(f"weights.format must be one of {list(WEIGHT_FORMATS)}, got {weights.get('format')!r}")
    if weights.get("part", "model") not in ("model", "backbone"):
        problems.append(f"weights.part must be 'model' or 'backbone', got {weights.get('part')!r}")
    if "licence" not in weights:
        problems.append("weights.licence is missing")
    if bool(weights.get("file")) == bool(weights.get("url")):
        problems.append("weights need exactly one of 'file' (in the card's folder) or 'url'")
    sha = weights.get("sha256")
    if weights.get("file"):
        if not (isinstance(sha, str) and _SHA256.match(sha)):
            problems.append(f"weights.file {weights['file']!r} has no sha256 (64 lowercase hex)")
        if not (folder / weights["file"]).is_file():
            problems.append(f"weights.file {folder / weights['file']} does not exist")
    if weights.get("url"):
        if "file_name" not in weights:
            problems.append("weights.url needs weights.file_name (the name in the cache)")
        if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
            problems.append(f"weights.sha256 must be 64 lowercase hex or null, got {sha!r}")
        if sha is None and not weights.get("sha256_note"):
            problems.append("weights.sha256 is null: say why in weights.sha256_note")
    return problems


def list_cards(folder=None):
    """Names of every card in the zoo folder, sorted."""
    folder = Path(folder) if folder is not None else zoo_dir()
    return sorted(p.parent.name for p in folder.glob(f"*/{CARD_FILE}"))


def get_card(name, folder=None):
    """The checked card of zoo entry ``name``; an unknown name lists the known ones."""
    folder = Path(folder) if folder is not None else zoo_dir()
    path = folder / str(name) / CARD_FILE
    if not path.is_file():
        raise ValueError(f"no zoo model {name!r} (no {path}); known: {', '.join(list_cards(folder)) or 'none'}")
    return read_card(path)


def write_card(data, path):
    """Write a card mapping as YAML, short lists and small mappings on one line (for tools that update cards)."""
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def short_list(dumper, items):
        flat = all(not isinstance(x, (dict, list)) for x in items)
        triples = bool(items) and all(isinstance(x, list) and len(x) == 3 for x in items)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flat or triples)

    def small_mapping(dumper, mapping):
        flat = len(mapping) <= 8 and all(not isinstance(v, (dict, list)) for v in mapping.values())
        inline = flat and ("metric" in mapping or "gaussian_sxy" in mapping or "backbone" in mapping)
        return dumper.represent_mapping("tag:yaml.org,2002:map", mapping.items(), flow_style=inline)

    Dumper.add_representer(list, short_list)
    Dumper.add_representer(dict, small_mapping)
    Path(path).write_text(yaml.dump(data, Dumper=Dumper, sort_keys=False, width=110, allow_unicode=True))
