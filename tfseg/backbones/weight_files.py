"""Weight files on disk: the cache folder, hashes, and the errors every weight loader raises.

Shared by the keras.applications loader (``tfseg.backbones.weights``) and the official DeepLab
checkpoint converter (``tfseg.backbones.official``), so neither imports the other for them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CACHE_ENV_VAR = "TFSEG_CACHE_DIR"
OFFICIAL_TARBALL_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class WeightsUnavailableError(RuntimeError):
    """The weight file is neither in the cache nor downloadable."""


class WeightsHashError(ValueError):
    """A weight file's hash differs from the pinned one."""


class WeightsMismatchError(ValueError):
    """A weight file does not fit the model (unmatched layers, counts or shapes)."""


def default_cache_dir(cache_dir=None):
    """``cache_dir``, else ``$TFSEG_CACHE_DIR``, else ``$KERAS_HOME/models`` or ``~/.keras/models``.

    The default is the folder ``keras.utils.get_file(cache_subdir="models")`` uses, so files
    keras.applications already downloaded are reused.
    """
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR]).expanduser()
    keras_home = os.environ.get("KERAS_HOME") or os.path.join("~", ".keras")
    return Path(keras_home).expanduser() / "models"


def hash_algorithm_of(file_hash, hash_algorithm=None):
    """``hash_algorithm``, or the one a hex digest's length implies (64: sha256, 32: md5)."""
    if hash_algorithm is not None:
        return hash_algorithm
    lengths = {64: "sha256", 32: "md5"}
    if len(file_hash) not in lengths:
        raise ValueError(f"cannot tell the algorithm of hash {file_hash!r}; give a sha256 (64 hex) or md5 (32 hex)")
    return lengths[len(file_hash)]


def file_digest(path, algorithm="sha256", chunk_size=1 << 20):
    """Hex digest of a file."""
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            hasher.update(chunk)
    return hasher.hexdigest()
