"""Fetching a card's weight file through ``keras.utils.get_file``, verified by sha256 before use.

``get_file`` re-downloads a cached file whose hash is wrong, but a fresh download with a wrong
hash raises and stays on disk (keras 3.15); tfseg deletes it so that no later call picks it up.
Without network the error names the URL and the exact path where the file can be put by hand.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from tfseg.backbones.weights import (
    DEFAULT_TIMEOUT_S,
    WeightsHashError,
    WeightsUnavailableError,
    _fail_fast_on_dns,
    default_cache_dir,
    file_digest,
)

CACHE_SUBDIR = "tfseg_zoo"


def cached_path(file_name, cache_dir=None):
    """Where the zoo keeps ``file_name``: ``<cache>/tfseg_zoo/<file_name>``, ``<cache>`` as in
    ``tfseg.backbones.weights.default_cache_dir`` (``cache_dir``, ``$TFSEG_CACHE_DIR`` or
    ``~/.keras/models``, the folder keras.utils.get_file uses)."""
    return default_cache_dir(cache_dir) / CACHE_SUBDIR / file_name


def fetch(url, file_name, sha256, *, cache_dir=None, allow_unverified=False, timeout=DEFAULT_TIMEOUT_S):
    """Local path of ``url`` saved as ``file_name`` in the cache, its sha256 checked.

    ``sha256=None`` (the publisher gives none) needs ``allow_unverified=True``; the file is then
    used with a warning that prints its sha256, so that it can be pinned.
    """
    import keras

    if sha256 is None and not allow_unverified:
        raise WeightsHashError(
            f"{url}: no sha256 is published for this file. Pass weights_hash=<sha256 of a copy you trust> "
            "or allow_unverified=True to use it unverified"
        )
    path = cached_path(file_name, cache_dir)
    if path.is_file() and (sha256 is None or file_digest(path) == sha256):
        return _checked(path, sha256)
    fresh = not path.is_file()
    try:
        # get_file falls back to /tmp/.keras when the cache folder is not writable (or not there yet).
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WeightsUnavailableError(f"cannot create the cache folder {path.parent}: {error}; pass cache_dir=") from error
    try:
        _fail_fast_on_dns(url, timeout)
        got = keras.utils.get_file(
            fname=file_name, origin=url, file_hash=sha256, hash_algorithm="sha256",
            cache_dir=str(path.parent.parent), cache_subdir=CACHE_SUBDIR,
        )
    except ValueError as error:  # get_file's hash mismatch
        if fresh or path.is_file():
            path.unlink(missing_ok=True)
        raise WeightsHashError(f"{url}: {error}; the downloaded file was deleted") from error
    except Exception as error:  # get_file wraps URL, HTTP and OS errors in a plain Exception
        pin = f" (sha256 {sha256})" if sha256 else ""
        raise WeightsUnavailableError(
            f"cannot download {url}: {error}. Without network access, download it elsewhere and place it at "
            f"{path}{pin}, or pass the local file as weights=PATH"
        ) from error
    return _checked(Path(got), sha256)


def _checked(path, sha256):
    digest = file_digest(path)
    if sha256 is None:
        warnings.warn(f"using {path} without hash verification; its sha256 is {digest}", stacklevel=3)
    elif digest != sha256:
        path.unlink(missing_ok=True)
        raise WeightsHashError(f"{path} has sha256 {digest}, expected {sha256}; the file was deleted")
    return path


def check_local_file(path, sha256, what):
    """``path`` when its sha256 is ``sha256``; else ``WeightsHashError`` naming the file (nothing deleted)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    digest = file_digest(path)
    if sha256 is not None and digest != sha256:
        raise WeightsHashError(f"{what}: {path} has sha256 {digest}, the card pins {sha256}")
    return path
