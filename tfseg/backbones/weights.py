"""ImageNet backbone weights: the keras.applications weight files, and DeepLab's Xception-65 checkpoint.

The files are the legacy Keras HDF5 weight files that ``keras.applications`` downloads (root
attribute ``layer_names``; one group per layer with attribute ``weight_names``; tensors in the
legacy order trainable-then-non-trainable, e.g. BN gamma, beta, moving_mean, moving_variance).
tfseg's backbones use keras.applications' layer names, so weights are assigned by exact layer
name, every shape is checked, every tensor of the file must be used exactly once and every
weighted layer of the backbone must receive weights (users of other zoos report weights loaded by
name with silent shape mismatches).

Hashes: keras.applications pins its files with the md5 values below (``file_hash`` arguments of
``keras.utils.get_file`` in ``keras/src/applications/vgg16.py`` and ``resnet.py``
``WEIGHTS_HASHES``; a 32-hex ``file_hash`` is md5 under ``hash_algorithm="auto"``). Keras
publishes no hash for the MobileNetV2 files (``mobilenet_v2.py`` calls ``get_file`` without
``file_hash``): that file needs a user-supplied hash or an explicit ``allow_unverified=True``.

Xception-65 has no keras.applications file: its ImageNet weights are the official DeepLab
checkpoint tarball (``research/deeplab/g3doc/model_zoo.md``, ``xception_65_imagenet``), converted
by ``tfseg.backbones.official`` (every tensor used once, shapes checked, the 1001-class classifier
ignored). The model zoo publishes no checksum for it either. The conversion runs once per
tarball: the converted weights are cached in the cache folder (where the download goes) as
``<tarball>.<sha256 prefix>.converted.npz``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import numpy as np

from tfseg.backbones.weight_files import (  # noqa: F401  (re-exported: part of this module's interface)
    CACHE_ENV_VAR,
    OFFICIAL_TARBALL_SUFFIXES,
    WeightsHashError,
    WeightsMismatchError,
    WeightsUnavailableError,
    default_cache_dir,
    file_digest,
    hash_algorithm_of,
)

DEFAULT_TIMEOUT_S = 10.0
MAX_PROBLEMS_LISTED = 60
_KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """One downloadable weight file and the hash its publisher pins it with (None: none published)."""

    file_name: str
    url: str
    file_hash: str | None
    hash_algorithm: str | None
    hash_source: str
    description: str
    # Layers of the file that a tfseg backbone may lack on purpose, with the reason; loading leaves
    # them unused (and logs it) only when the model has none of them.
    optional_layers: tuple[str, ...] = ()
    optional_reason: str = ""
    # "keras_h5": a legacy keras.applications HDF5 file; "official_deeplab_tarball": an official
    # DeepLab checkpoint tarball, converted by tfseg.backbones.official.
    format: str = "keras_h5"


IMAGENET_WEIGHTS = {
    "vgg16": WeightsFile(
        file_name="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        url=_KERAS_BASE_URL + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        file_hash="6d6bbae143d832006294945121d1f1fc",
        hash_algorithm="md5",
        hash_source="keras/src/applications/vgg16.py, get_file(..., file_hash=...) for include_top=False",
        description="VGG16 convolutional layers block1_conv1..block5_conv3, ImageNet, no top",
    ),
    "vgg16_top": WeightsFile(
        file_name="vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        url=_KERAS_BASE_URL + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        file_hash="64373286793e3c8b2b4e3219cbf3544b",
        hash_algorithm="md5",
        hash_source="keras/src/applications/vgg16.py, get_file(..., file_hash=...) for include_top=True",
        description="VGG16 with the classifier fc1/fc2/predictions (source of FCN / DeepLab fc6-fc7)",
    ),
    "resnet50": WeightsFile(
        file_name="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        url=_KERAS_BASE_URL + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        file_hash="4d473c1dd8becc155b73f8504c6f6626",
        hash_algorithm="md5",
        hash_source="keras/src/applications/resnet.py, WEIGHTS_HASHES['resnet50'][1] (no top)",
        description="ResNet-50 v1, ImageNet, no top",
    ),
    "resnet101": WeightsFile(
        file_name="resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
        url=_KERAS_BASE_URL + "resnet/resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
        file_hash="88cf7a10940856eca736dc7b7e228a21",
        hash_algorithm="md5",
        hash_source="keras/src/applications/resnet.py, WEIGHTS_HASHES['resnet101'][1] (no top)",
        description="ResNet-101 v1, ImageNet, no top",
    ),
    "mobilenet_v2": WeightsFile(
        file_name="mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        url=_KERAS_BASE_URL + "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        file_hash=None,
        hash_algorithm=None,
        hash_source="none published: keras/src/applications/mobilenet_v2.py calls get_file without file_hash",
        description="MobileNetV2 alpha 1.0, 224, ImageNet, no top",
        optional_layers=("Conv_1", "Conv_1_bn"),
        optional_reason=(
            "keras' last 1x1 conv to 1280 channels (slim layer_19): the official DeepLab MobileNetV2 ends at "
            "layer_18, and so does tfseg's unless built with include_last_conv=True"
        ),
    ),
    "xception65": WeightsFile(
        file_name="deeplabv3_xception_2018_01_04.tar.gz",
        url="http://download.tensorflow.org/models/deeplabv3_xception_2018_01_04.tar.gz",
        file_hash=None,
        hash_algorithm=None,
        hash_source="none published: tensorflow/models research/deeplab/g3doc/model_zoo.md lists the URL only",
        description="official DeepLab Xception-65 ImageNet checkpoint (xception_65_imagenet), 447 MB tarball",
        format="official_deeplab_tarball",
    ),
}
def _fail_fast_on_dns(url, timeout):
    """Resolve the host within ``timeout`` (urlopen's timeout does not bound the DNS lookup)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        return
    if urllib.request.getproxies().get(parsed.scheme):
        return  # the proxy resolves the name
    outcome = {}

    def resolve():
        try:
            socket.getaddrinfo(parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80))
        except OSError as error:
            outcome["error"] = error

    resolver = threading.Thread(target=resolve, daemon=True)
    resolver.start()
    resolver.join(timeout)
    if resolver.is_alive():
        raise OSError(f"DNS lookup of {parsed.hostname} took more than {timeout} s")
    if "error" in outcome:
        raise outcome["error"]


def _download(url, destination, timeout):
    """Fetch ``url`` (http, https or file) into ``destination``; raise ``OSError`` on failure."""
    _fail_fast_on_dns(url, timeout)
    with urllib.request.urlopen(url, timeout=timeout) as response, open(destination, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)


def weights_file(
    backbone, cache_dir=None, file_hash=None, hash_algorithm=None, allow_unverified=False, timeout=DEFAULT_TIMEOUT_S
):
    """Local path of the verified ImageNet weight file of ``backbone`` (a key of ``IMAGENET_WEIGHTS``).

    Looks in the cache (see ``default_cache_dir``) and checks the hash; when the file is absent
    or its hash is wrong, downloads it from the table's URL (``urllib``; ``file://`` works) and
    checks again. Offline, fails within ``timeout`` seconds with ``WeightsUnavailableError``
    naming the URL and the exact cache path where the file can be placed by hand.

    ``file_hash`` overrides the table's hash (sha256 or md5, told apart by length unless
    ``hash_algorithm`` is given); it is required for files whose publisher gives none, unless
    ``allow_unverified=True``, which accepts the file with a warning that prints its sha256.
    """
    if backbone not in IMAGENET_WEIGHTS:
        raise ValueError(f"no ImageNet weights for {backbone!r}; available: {sorted(IMAGENET_WEIGHTS)}")
    entry = IMAGENET_WEIGHTS[backbone]
    expected_hash = file_hash if file_hash is not None else entry.file_hash
    if expected_hash is not None:
        algorithm = hash_algorithm_of(expected_hash, hash_algorithm if file_hash is not None else entry.hash_algorithm)
        expected_hash = expected_hash.lower()
    elif not allow_unverified:
        raise WeightsHashError(
            f"{entry.file_name}: {entry.hash_source}. Pass file_hash=<sha256 of a copy you trust> "
            "or allow_unverified=True to use it unverified (model builders: backbone_weights_hash=... or "
            "allow_unverified_weights=True)."
        )
    path = default_cache_dir(cache_dir) / entry.file_name

    def verified(candidate):
        if expected_hash is None:
            warnings.warn(
                f"using {path} without hash verification (none published); "
                f"its sha256 is {file_digest(candidate, 'sha256')}: pass it as file_hash to pin it",
                stacklevel=3,
            )
            return True
        return file_digest(candidate, algorithm) == expected_hash

    stale_note = ""
    if path.is_file():
        if verified(path):
            return path
        stale_note = f" (the cached copy there has the wrong {algorithm} hash: {file_digest(path, algorithm)})"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WeightsUnavailableError(
            f"cannot create the cache folder {path.parent}: {error}; pass cache_dir= or set ${CACHE_ENV_VAR}"
        ) from error
    partial = path.with_name(f"{path.name}.part{os.getpid()}")
    try:
        try:
            _download(entry.url, partial, timeout)
        except OSError as error:  # URLError, timeouts and refused connections are all OSErrors
            pin = f"; its {algorithm} must be {expected_hash}" if expected_hash else ""
            raise WeightsUnavailableError(
                f"cannot download {entry.url}: {error}{stale_note}. Without network access, download the file "
                f"elsewhere and place it at {path}{pin} (the cache folder can be set with cache_dir= or "
                f"${CACHE_ENV_VAR})."
            ) from error
        if not verified(partial):
            source = "given as file_hash" if file_hash is not None else entry.hash_source
            raise WeightsHashError(
                f"{entry.url} downloaded with {algorithm} {file_digest(partial, algorithm)}, expected "
                f"{expected_hash} ({source}); the download was discarded"
            )
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()
    return path


# --------------------------------------------------------------------------------------------
# Reading legacy Keras HDF5 weight files


def _string_list_attr(group, name):
    """A list-of-strings attribute, also in the chunked form ``name0, name1, ...`` Keras uses for long lists."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _dataset_paths(group):
    paths = []
    group.visititems(lambda name, obj: paths.append(name) if hasattr(obj, "shape") else None)
    return paths


def read_legacy_h5_weights(path):
    """``{layer_name: [(weight_name, array), ...]}`` of a legacy Keras HDF5 weight file, file order kept.

    Also accepts a full legacy model file (weights under ``model_weights``). Raises
    ``WeightsMismatchError`` when a tensor is stored but not listed, listed twice, or a group
    exists that ``layer_names`` does not list.
    """
    import h5py

    layers, problems = {}, []
    with h5py.File(path, "r") as handle:
        root = handle
        if "layer_names" not in handle.attrs and "layer_names0" not in handle.attrs and "model_weights" in handle:
            root = handle["model_weights"]
        layer_names = _string_list_attr(root, "layer_names")
        if not layer_names:
            raise WeightsMismatchError(
                f"{path} is not a legacy Keras HDF5 weight file (no 'layer_names' attribute); "
                "Keras 3 '.weights.h5' files load with model.load_weights instead"
            )
        for name in root.keys():
            if name not in layer_names and name != "top_level_model_weights":
                problems.append(f"group '{name}' is not listed in layer_names")
        if "top_level_model_weights" in root and _dataset_paths(root["top_level_model_weights"]):
            problems.append(f"unused top-level tensors: {_dataset_paths(root['top_level_model_weights'])}")
        for layer_name in layer_names:
            if layer_name in layers:
                problems.append(f"layer '{layer_name}' is listed twice")
                continue
            group = root[layer_name]
            weight_names = _string_list_attr(group, "weight_names")
            stored = set(_dataset_paths(group))
            unlisted = sorted(stored - set(weight_names))
            if unlisted:
                problems.append(f"layer '{layer_name}': tensors stored but not in weight_names: {unlisted}")
            twice = sorted({w for w in weight_names if weight_names.count(w) > 1})
            if twice:
                problems.append(f"layer '{layer_name}': tensors listed twice: {twice}")
            missing = [w for w in weight_names if w not in stored]
            if missing:
                problems.append(f"layer '{layer_name}': weight_names lists absent tensors: {missing}")
                continue
            layers[layer_name] = [(w, np.asarray(group[w])) for w in weight_names]
    if problems:
        raise WeightsMismatchError(f"malformed weight file {path}:\n  " + "\n  ".join(problems))
    return layers


# --------------------------------------------------------------------------------------------
# Assigning them to a model


def _weighted_layers(model):
    """``[(layer, owner_model)]`` of the layers holding weights, descending into nested models."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_weighted_layers(layer))
        elif layer.weights:
            found.append((layer, model))
    return found


def _nested_models(model):
    import keras

    models = [model]
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            models.extend(_nested_models(layer))
    return models


def _legacy_order(layer):
    """The order in which legacy HDF5 files store a layer's tensors (Keras' ``_legacy_weights``)."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def _weight_base_name(file_weight_name):
    """'conv1_bn/gamma:0' -> 'gamma'; Keras 1 style names ('block1_conv1_W_1:0') give 'block1_conv1_W_1'."""
    return file_weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def load_imagenet_weights(
    model,
    source="imagenet",
    backbone=None,
    cache_dir=None,
    file_hash=None,
    allow_unverified=False,
    require_all=True,
    timeout=DEFAULT_TIMEOUT_S,
):
    """Assign a keras.applications weight file to ``model`` by exact layer name; return the layer names loaded.

    ``source``: ``"imagenet"`` (file of ``backbone``, fetched by ``weights_file``), a key of
    ``IMAGENET_WEIGHTS``, or the path of a legacy Keras ``.h5`` weight file. ``backbone``
    defaults to ``model.name`` when that is a key of the table.

    ``model`` may be the backbone or a bigger model holding it: layers are searched in nested
    models too. Everything is checked before anything is assigned; ``WeightsMismatchError`` lists
    every file layer absent from the model, tensor-count and shape mismatches, tensors whose
    names say they are stored in another order than the model's, and (``require_all``) the
    weighted layers of the backbone left without weights. The backbone is the innermost
    (nested) model holding all the file's layers; when the backbone's layers sit directly in a
    bigger model, pass the backbone model itself or ``require_all=False``.

    The table's ``optional_layers`` of ``backbone`` (e.g. MobileNetV2's ``Conv_1`` top, which
    DeepLab's MobileNetV2 does not have) are left unused when the model has none of them; that is
    logged (logger ``tfseg.backbones.weights``, INFO) and they are not in the returned list.

    Official DeepLab tarballs (the table's ``xception65`` entry, or a local ``.tar.gz`` path) go
    through ``load_official_tarball``; ``require_all`` does not apply (the conversion is always complete).
    """
    table_key = source if source in IMAGENET_WEIGHTS else (backbone or model.name)
    optional_layers = IMAGENET_WEIGHTS[table_key].optional_layers if table_key in IMAGENET_WEIGHTS else ()
    if source == "imagenet" or source in IMAGENET_WEIGHTS:
        name = source if source in IMAGENET_WEIGHTS else (backbone or model.name)
        if name not in IMAGENET_WEIGHTS:
            raise ValueError(
                f"which ImageNet weights? pass backbone= one of {sorted(IMAGENET_WEIGHTS)} (model name {model.name!r})"
            )
        path = weights_file(
            name, cache_dir=cache_dir, file_hash=file_hash, allow_unverified=allow_unverified, timeout=timeout
        )
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weight file {path} does not exist")
        if file_hash is not None and file_digest(path, hash_algorithm_of(file_hash)) != file_hash.lower():
            raise WeightsHashError(f"{path} does not have the {hash_algorithm_of(file_hash)} hash {file_hash}")
    table_format = IMAGENET_WEIGHTS[table_key].format if table_key in IMAGENET_WEIGHTS else "keras_h5"
    if (source in ("imagenet", table_key) and table_format == "official_deeplab_tarball") or (
        path.name.endswith(OFFICIAL_TARBALL_SUFFIXES)
    ):
        return load_official_tarball(model, path, cache_dir=cache_dir)
    file_layers = {name: tensors for name, tensors in read_legacy_h5_weights(path).items() if tensors}

    model_layers = {}
    duplicated = set()
    for layer, _ in _weighted_layers(model):
        if layer.name in model_layers:
            duplicated.add(layer.name)
        model_layers[layer.name] = layer

    unused = []
    if optional_layers and not set(optional_layers) & set(model_layers):
        unused = [name for name in file_layers if name in optional_layers]
        file_layers = {name: tensors for name, tensors in file_layers.items() if name not in unused}

    problems = []
    assignments = []
    for layer_name, tensors in file_layers.items():
        if layer_name in duplicated:
            problems.append(f"layer '{layer_name}': several layers of the model have this name")
            continue
        layer = model_layers.get(layer_name)
        if layer is None:
            problems.append(f"layer '{layer_name}' of the file is not in the model (tensors {[w for w, _ in tensors]})")
            continue
        variables = _legacy_order(layer)
        if len(variables) != len(tensors):
            problems.append(
                f"layer '{layer_name}': the file has {len(tensors)} tensors {[w for w, _ in tensors]}, "
                f"the model {len(variables)} {[v.path for v in variables]}"
            )
            continue
        variable_names = {v.name for v in variables}
        for (weight_name, value), variable in zip(tensors, variables):
            base = _weight_base_name(weight_name)
            if base in variable_names and base != variable.name:
                problems.append(f"'{weight_name}' of the file sits where the model expects '{variable.path}'")
            elif tuple(value.shape) != tuple(variable.shape):
                problems.append(
                    f"'{weight_name}': shape {tuple(value.shape)} in the file, {tuple(variable.shape)} for "
                    f"'{variable.path}' in the model"
                )
            else:
                assignments.append((variable, value))

    if require_all:
        matched = set(file_layers) & set(model_layers)
        candidates = [
            m for m in _nested_models(model) if matched <= {layer.name for layer, _ in _weighted_layers(m)}
        ]
        scope = min(candidates, key=lambda m: len(_weighted_layers(m)))
        left_out = [layer.name for layer, _ in _weighted_layers(scope) if layer.name not in file_layers]
        if left_out:
            problems.append(
                f"{len(left_out)} weighted layers of '{scope.name}' get no weights from the file: {left_out} "
                "(to load into part of a model, pass the backbone model or require_all=False)"
            )
    if problems:
        shown = problems[:MAX_PROBLEMS_LISTED]
        if len(problems) > len(shown):
            shown.append(f"... and {len(problems) - len(shown)} more")
        raise WeightsMismatchError(
            f"{path} does not fit '{model.name}' ({len(problems)} problems):\n  " + "\n  ".join(shown)
        )
    for variable, value in assignments:
        variable.assign(value.astype(variable.dtype))
    if unused:
        logger.info(
            "%s: layers %s of the file left unused on purpose: %s",
            path, unused, IMAGENET_WEIGHTS[table_key].optional_reason,
        )
    return list(file_layers)


# --------------------------------------------------------------------------------------------
# Official DeepLab checkpoint tarballs


def load_official_tarball(model, tarball, cache_dir=None):
    """Load an official DeepLab backbone checkpoint tarball (e.g. Xception-65 ImageNet) into ``model``.

    ``model`` is the backbone, or a model holding it (the nested tfseg Xception / MobileNetV2 gets
    the weights); converted once and cached in the cache folder (``tfseg.backbones.official.load_tarball``).
    Returns the backbone's layer names that got weights.
    """
    from tfseg.backbones import official

    backbone = official.official_backbone(model)
    official.load_tarball(backbone, tarball, default_cache_dir(cache_dir))
    return [layer.name for layer in backbone.layers if layer.weights]
