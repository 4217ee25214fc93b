"""Official DeepLab checkpoints (TF1, name-based) converted into tfseg models, every tensor checked.

Reference: Chen, Zhu, Papandreou, Schroff, Adam, "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation", ECCV 2018 (arXiv 1802.02611); official code and
model zoo in github.com/tensorflow/models: ``research/deeplab`` (``model.py``,
``core/xception.py``, ``core/feature_extractor.py``, ``g3doc/model_zoo.md``) and
``research/slim/nets/mobilenet`` (``mobilenet.py``, ``mobilenet_v2.py``, ``conv_blocks.py``).

Official names, as that code creates them (slim: a conv's kernel is ``weights``, HWIO; a
depthwise conv's is ``depthwise_weights``, ``[kh, kw, cin, 1]``, the Keras layout too; a conv
followed by batch norm has no bias; batch norm is ``BatchNorm/{gamma,beta,moving_mean,moving_variance}``):

- Xception-65 (``xception_65``; ``xception_41``/``xception_71`` alike): ``entry_flow/conv1_{1,2}``,
  ``{entry,middle,exit}_flow/block{b}/unit_{u}/xception_module/separable_conv{1,2,3}_{depthwise,pointwise}``
  and ``.../xception_module/shortcut``. tfseg's layer names are these scopes with ``/`` flattened
  (``tfseg.backbones.xception``). The ImageNet checkpoint adds the classifier
  ``xception_65/logits/{weights,biases}`` (1001 classes).
- MobileNetV2 (``MobilenetV2``): ``Conv``, ``expanded_conv/{depthwise,project}`` (no ``expand``:
  its expansion factor is 1), ``expanded_conv_{1..16}/{expand,depthwise,project}``; DeepLab builds
  it up to ``layer_18`` (no ``Conv_1``). ``V2_DEF`` sets slim batch norm ``scale: True``, so every
  MobileNetV2 batch norm has a ``gamma``. tfseg uses keras.applications' names (``Conv1``/``bn_Conv1``,
  ``expanded_conv_*``, ``block_{i}_*``/``_BN``), mapped below.
- Heads (no model scope): ``image_pooling``, ``aspp0``, ``aspp{1,2,3}_{depthwise,pointwise}``
  (``aspp{i}`` without separable convs), ``concat_projection``, ``decoder/feature_projection0``,
  ``decoder/decoder_conv{0,1}_{depthwise,pointwise}``, ``logits/semantic/{weights,biases}``.

The official MobileNetV2 models (VOC, Cityscapes) have image pooling + ``aspp0`` only and no
decoder (``model_zoo.md``; ``atrous_rates`` and ``decoder_output_stride`` unset): that is
``deeplab_v3plus(..., backbone="mobilenet_v2", atrous_rates=(), decoder=False)``, its defaults.

Checkpoint entries ignored on purpose, and only these: whatever sits under a mapped variable's
name (``<variable>/<slot>``: the optimizer slots of any optimizer, ``/Momentum``, ``/Adam`` and
``/Adam_1``, ``/RMSProp`` and ``/RMSProp_1``, and ``/ExponentialMovingAverage`` shadows),
``global_step``, and, when the model is a bare Xception backbone, the ImageNet classifier
``xception_*/logits/*`` with its slots. They are listed in the ``ConversionReport`` and logged.
Everything else maps one to one: each checkpoint variable to one tfseg weight of the same shape
and each tfseg weight from one checkpoint variable; anything else is an error listing every name.

This module belongs to the backbones (their official checkpoints, e.g. the ImageNet Xception-65
that ``backbone_weights="imagenet"`` loads); ``tfseg.zoo`` uses it for the official cards.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tarfile
from pathlib import Path

import numpy as np

from tfseg.backbones.weight_files import OFFICIAL_TARBALL_SUFFIXES, WeightsMismatchError, file_digest

MAX_LISTED = 100  # names listed per kind of problem
IGNORED_NAMES = ("global_step",)
logger = logging.getLogger(__name__)

# (tfseg layer name pattern, official scope template filled with the pattern's groups), per part.
XCEPTION_RULES = (
    (r"entry_flow_conv1_(\d)", "entry_flow/conv1_{0}"),
    (r"(entry|middle|exit)_flow_block(\d+)_unit(\d+)_sepconv(\d)_(depthwise|pointwise)",
     "{0}_flow/block{1}/unit_{2}/xception_module/separable_conv{3}_{4}"),
    (r"(entry|middle|exit)_flow_block(\d+)_unit(\d+)_shortcut", "{0}_flow/block{1}/unit_{2}/xception_module/shortcut"),
)
MOBILENET_V2_RULES = (
    (r"Conv1", "Conv"),
    (r"expanded_conv_(depthwise|project)", "expanded_conv/{0}"),
    (r"block_(\d+)_(expand|depthwise|project)", "expanded_conv_{0}/{1}"),
    (r"Conv_1", "Conv_1"),
)
HEAD_RULES = (
    (r"(image_pooling|aspp\d+|aspp\d+_depthwise|aspp\d+_pointwise|concat_projection)", "{0}"),
    (r"feature_projection0", "decoder/feature_projection0"),
    (r"(decoder_conv\d)_(depthwise|pointwise)", "decoder/{0}_{1}"),
    (r"logits", "logits/semantic"),
)
# Batch-norm layer name -> the conv layer it follows (tfseg ``<conv>_bn``; keras.applications ``<conv>_BN``,
# ``bn_Conv1``).
BATCH_NORM_NAMES = ((r"(.+)_bn", "{0}"), (r"(.+)_BN", "{0}"), (r"bn_(Conv1)", "{0}"))
# Keras variable name -> official variable name, per layer class.
VARIABLE_NAMES = {
    "Conv2D": {"kernel": "weights", "bias": "biases"},
    "DepthwiseConv2D": {"kernel": "depthwise_weights"},
    "BatchNormalization": {n: n for n in ("gamma", "beta", "moving_mean", "moving_variance")},
}
# (entry-flow blocks, middle-flow units) of a tfseg Xception -> official scope.
XCEPTION_SCOPES = {(3, 8): "xception_41", (3, 16): "xception_65", (5, 16): "xception_71"}


@dataclasses.dataclass(frozen=True)
class ConversionReport:
    """What ``load_official_checkpoint`` did: variables and values assigned, entries ignored."""

    source: str
    assigned: int
    parameters: int
    ignored: tuple[str, ...]

    def __str__(self):
        return (f"{self.source}: {self.assigned} variables ({self.parameters:,} values) assigned, "
                f"{len(self.ignored)} entries ignored")


# --------------------------------------------------------------------------------------------
# Names


def _apply_rules(rules, name):
    for pattern, template in rules:
        match = re.fullmatch(pattern, name)
        if match:
            return template.format(*match.groups())
    return None


def _backbone_kind(model):
    """``(official scope, rules)`` when ``model`` is a tfseg Xception or MobileNetV2 backbone, else None."""
    names = {layer.name for layer in model.layers}
    if "entry_flow_conv1_1" in names:
        entry = [n for n in names if re.fullmatch(r"entry_flow_block\d+_unit1_sepconv1_depthwise", n)]
        middle = [n for n in names if re.fullmatch(r"middle_flow_block1_unit\d+_sepconv1_depthwise", n)]
        scope = XCEPTION_SCOPES.get((len(entry), len(middle)))
        if scope is None:
            raise ValueError(f"{model.name}: an Xception with {len(entry)} entry-flow blocks and {len(middle)} "
                             f"middle-flow units has no official checkpoint scope (known: {XCEPTION_SCOPES})")
        return scope, XCEPTION_RULES
    if "Conv1" in names and "expanded_conv_depthwise" in names:
        return "MobilenetV2", MOBILENET_V2_RULES
    return None


def _model_parts(model):
    """``[(keras model, official scope prefix, rules)]``, and whether ``model`` is a bare backbone."""
    import keras

    kind = _backbone_kind(model)
    if kind is not None:
        return [(model, kind[0] + "/", kind[1])], True
    parts = [(model, "", HEAD_RULES)]
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            nested = _backbone_kind(layer)
            if nested is None:
                raise ValueError(f"{model.name}: nested model {layer.name!r} is not a tfseg Xception or MobileNetV2 "
                                 "backbone; official DeepLab checkpoints hold only those")
            parts.append((layer, nested[0] + "/", nested[1]))
    if len(parts) != 2:
        found = f"found {[p[0].name for p in parts[1:]]}" if len(parts) > 2 else "found none"
        raise ValueError(f"{model.name} is neither a tfseg Xception / MobileNetV2 backbone nor a model holding "
                         f"exactly one ({found}); official DeepLab checkpoints fit only those")
    return parts, False


def official_backbone(model):
    """The tfseg Xception / MobileNetV2 backbone of ``model``: ``model`` itself or the one nested in it."""
    parts, bare = _model_parts(model)
    return model if bare else parts[1][0]


def _official_scope(layer_name, rules):
    """Official scope of a tfseg layer (conv, depthwise conv or batch norm), or None."""
    scope = _apply_rules(rules, layer_name)
    if scope is not None:
        return scope
    conv = _apply_rules(BATCH_NORM_NAMES, layer_name)
    conv_scope = None if conv is None else _apply_rules(rules, conv)
    return None if conv_scope is None else conv_scope + "/BatchNorm"


def _tfseg_weights(model):
    """``[(official name or None, tfseg weight path, keras variable)]`` for every weight of ``model``."""
    import keras

    parts, _ = _model_parts(model)
    found = []
    for part, prefix, rules in parts:
        for layer in part.layers:
            if isinstance(layer, keras.Model) or not layer.weights:
                continue
            location = layer.name if part is model else f"{part.name}/{layer.name}"
            names = VARIABLE_NAMES.get(type(layer).__name__, {})
            scope = _official_scope(layer.name, rules)
            is_batch_norm = type(layer).__name__ == "BatchNormalization"
            if scope is not None and is_batch_norm != scope.endswith("/BatchNorm"):
                scope = None  # e.g. a batch norm named like a conv
            for variable in layer.weights:
                known = scope is not None and variable.name in names
                official = f"{prefix}{scope}/{names[variable.name]}" if known else None
                found.append((official, f"{location}/{variable.name}", variable))
    return found


def official_variable_map(model):
    """``{official checkpoint name: keras variable}`` for a tfseg DeepLab v3+ (Xception or MobileNetV2)
    or a bare Xception / MobileNetV2 backbone.

    Raises ``ValueError`` listing every tfseg weight without an official name (other models,
    non-separable decoders) and any official name claimed twice.
    """
    mapping, unnamed, twice = {}, [], []
    for official, path, variable in _tfseg_weights(model):
        if official is None:
            unnamed.append(path)
        elif official in mapping:
            twice.append(official)
        else:
            mapping[official] = variable
    if unnamed or twice:
        raise ValueError(f"{model.name} does not follow the official DeepLab layout: "
                         f"{len(unnamed)} weights without an official name {_listed(unnamed)}"
                         + (f"; official names claimed twice {_listed(twice)}" if twice else ""))
    return mapping


def _listed(names):
    names = list(names)
    shown = names[:MAX_LISTED]
    more = f" ... and {len(names) - len(shown)} more" if len(names) > len(shown) else ""
    return "[" + ", ".join(shown) + "]" + more


def _ignored(name, mapped, classifier_scope):
    """Slots and shadows of a mapped variable (``<variable>/<anything>``), the global step, a bare
    backbone's ImageNet classifier."""
    owner = name.rsplit("/", 1)[0]
    return (name in IGNORED_NAMES or (owner != name and owner in mapped)
            or (classifier_scope is not None and name.startswith(classifier_scope)))


# --------------------------------------------------------------------------------------------
# Reading and assigning


class _NpzReader:
    """The two ``CheckpointReader`` methods used here, over an ``.npz`` of official names."""

    def __init__(self, path):
        with np.load(path) as arrays:
            self._arrays = {name: arrays[name] for name in arrays.files}

    def get_variable_to_shape_map(self):
        return {name: list(value.shape) for name, value in self._arrays.items()}

    def get_tensor(self, name):
        return self._arrays[name]


def _open(checkpoint_path):
    """``(reader, description)`` for a checkpoint prefix, a folder holding one, or an ``.npz``."""
    import tensorflow as tf

    path = Path(checkpoint_path).expanduser()
    if path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"converted weights {path} do not exist")
        return _NpzReader(path), str(path)
    if path.is_dir():
        path = Path(find_checkpoint(path))
    if not Path(f"{path}.index").is_file():
        raise FileNotFoundError(f"no TensorFlow checkpoint at {path} (expected {path}.index and {path}.data-*)")
    try:
        return tf.train.load_checkpoint(str(path)), str(path)
    except (tf.errors.OpError, ValueError) as error:
        raise WeightsMismatchError(f"cannot read the checkpoint {path}: {error}") from error


def load_official_checkpoint(model, checkpoint_path):
    """Assign an official DeepLab checkpoint to ``model``; return a ``ConversionReport``.

    ``checkpoint_path``: a checkpoint prefix (``.../model.ckpt`` or ``model.ckpt-30000``), a folder
    holding one (see ``find_checkpoint``), or an ``.npz`` written by ``save_official_weights``.
    Everything is checked before anything is assigned: ``WeightsMismatchError`` lists every
    model weight missing from the checkpoint (with its tfseg path), every checkpoint variable the
    model has no weight for, and every shape mismatch (both shapes).
    """
    mapping = official_variable_map(model)
    parts, bare = _model_parts(model)
    prefix = parts[0][1]
    classifier = f"{prefix}logits/" if bare and prefix.startswith("xception_") else None
    paths = {official: path for official, path, _ in _tfseg_weights(model)}
    reader, source = _open(checkpoint_path)
    shapes = {name: tuple(shape) for name, shape in reader.get_variable_to_shape_map().items()}
    ignored = sorted(name for name in shapes if _ignored(name, mapping, classifier))
    used = {name: shape for name, shape in shapes.items() if name not in set(ignored)}

    missing = sorted(set(mapping) - set(used))
    unknown = sorted(set(used) - set(mapping))
    wrong = [f"{name} {used[name]} in the checkpoint, {tuple(mapping[name].shape)} for {paths[name]}"
             for name in sorted(set(used) & set(mapping)) if used[name] != tuple(mapping[name].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} model weights missing from the checkpoint: "
                        + _listed(f"{name} (-> {paths[name]})" for name in missing))
    if unknown:
        problems.append(f"{len(unknown)} checkpoint variables the model has no weight for: "
                        + _listed(f"{name} {used[name]}" for name in unknown))
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches: " + _listed(wrong))
    if problems:
        raise WeightsMismatchError(f"{source} does not fit '{model.name}':\n  " + "\n  ".join(problems))

    parameters = 0
    for name, variable in mapping.items():
        value = np.asarray(reader.get_tensor(name))
        variable.assign(value.astype(variable.dtype))
        parameters += value.size
    report = ConversionReport(source, len(mapping), parameters, tuple(ignored))
    under_mapped = [name for name in ignored if name.rsplit("/", 1)[0] in mapping]
    slots = sorted({name.rsplit("/", 1)[1] for name in under_mapped})
    others = sorted(set(ignored) - set(under_mapped))
    logger.info("%s: %d slots or shadows of mapped variables %s, and %s", report, len(under_mapped), slots,
                _listed(others))
    return report


def save_official_weights(model, path):
    """Write ``model``'s weights under their official names to ``path`` (an ``.npz``, written atomically)."""
    path = Path(path)
    arrays = {name: np.asarray(variable.numpy()) for name, variable in official_variable_map(model).items()}
    partial = path.with_name(f"{path.name}.part{os.getpid()}")
    try:
        with open(partial, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------------------------------
# Tarballs


def find_checkpoint(folder):
    """The checkpoint prefix inside ``folder`` (an extracted official tarball), searched recursively.

    A checkpoint is ``<prefix>.index`` with all its ``<prefix>.data-XXXXX-of-NNNNN`` shards, e.g.
    ``model.ckpt`` or ``deeplabv3_mnv2_pascal_train_aug/model.ckpt-30000``. None or several: an
    error naming what was found.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    found, incomplete = [], []
    for index in sorted(folder.rglob("*.index")):
        prefix = index.with_suffix("")
        shard = re.compile(re.escape(prefix.name) + r"\.data-(\d+)-of-(\d+)")
        shards = [m for p in prefix.parent.iterdir() if (m := shard.fullmatch(p.name))]
        totals = {int(m.group(2)) for m in shards}
        if len(totals) == 1 and len({m.group(1) for m in shards}) == totals.pop():
            found.append(str(prefix))
        else:
            incomplete.append(f"{prefix} (data shards: {sorted(m.group(0) for m in shards)})")
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"several checkpoints under {folder}: {found}; pass the prefix of the one to load")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    detail = f"; incomplete: {incomplete}" if incomplete else ""
    raise FileNotFoundError(f"no TensorFlow checkpoint (<prefix>.index + <prefix>.data-*) under {folder}{detail}; "
                            f"files there: {_listed(files)}")


def extract_tarball(path, dest):
    """Extract the tar archive ``path`` (gzip or not) into ``dest``; return ``dest``.

    Only regular files and folders whose paths stay inside ``dest`` are accepted: absolute
    names, ``..``, links and devices make it fail before anything is written, naming the members.
    """
    path, dest = Path(path), Path(dest)
    try:
        archive = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as error:
        raise ValueError(f"{path} is not a readable tar archive: {error}") from error
    with archive:
        root = dest.resolve()
        members = archive.getmembers()
        refused = []
        for member in members:
            target = (root / member.name).resolve()
            inside = target == root or root in target.parents
            if not (member.isfile() or member.isdir()) or os.path.isabs(member.name) or not inside:
                refused.append(member.name)
        if refused:
            raise ValueError(f"{path}: refusing to extract members that are not plain files or folders inside "
                             f"{dest}: {_listed(refused)}")
        dest.mkdir(parents=True, exist_ok=True)
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(dest, members=members, **extra)
    return dest


def load_tarball(model, tarball, cache_folder):
    """Load an official tarball into ``model`` (whole DeepLab model or backbone), converting it once.

    The first call extracts the tarball into a temporary folder, converts it with
    ``load_official_checkpoint`` and caches the converted weights (official names, ``.npz``) as
    ``<cache_folder>/<tarball stem>.<sha256[:16]>.converted.npz``; later calls load that file,
    with the same one-to-one checks. Returns the ``ConversionReport``.
    """
    import tempfile
    import zipfile


    tarball, folder = Path(tarball), Path(cache_folder)
    stem = tarball.name
    for suffix in OFFICIAL_TARBALL_SUFFIXES:
        stem = stem.removesuffix(suffix)
    converted = folder / f"{stem}.{file_digest(tarball)[:16]}.converted.npz"
    if converted.is_file():
        try:
            return load_official_checkpoint(model, converted)
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:  # mismatched, unreadable or truncated
            raise WeightsMismatchError(
                f"the converted weights {converted} of {tarball} do not load ({error}); delete that file to convert "
                "the tarball again"
            ) from error
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{stem}.", dir=folder) as extracted:
        extract_tarball(tarball, extracted)
        report = load_official_checkpoint(model, find_checkpoint(extracted))
    save_official_weights(model, converted)
    return report
