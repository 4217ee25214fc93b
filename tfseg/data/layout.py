"""Checks the readers share: a layout fails at once, naming the missing path and what was expected."""

from __future__ import annotations

import os
from pathlib import Path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
LABEL_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")


def resolve_root(root, env_var, dataset):
    """``root`` as a Path, or ``$env_var`` when ``root`` is None."""
    if root is None:
        if not os.environ.get(env_var):
            raise ValueError(f"{dataset}: no root given and ${env_var} is not set")
        root = os.environ[env_var]
    return Path(root).expanduser()


def require_dir(path, dataset, expected):
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{dataset}: missing folder {path} (expected {expected})")
    return Path(path)


def require_file(path, dataset, expected):
    if not Path(path).is_file():
        raise FileNotFoundError(f"{dataset}: missing file {path} (expected {expected})")
    return Path(path)


def read_list(path):
    """Non-blank lines of a split list, split on whitespace."""
    return [line.split() for line in Path(path).read_text().splitlines() if line.strip()]


def check_pairs(pairs, dataset, source):
    """Raise naming the first missing file of ``pairs`` (listed in ``source``) and how many are missing."""
    missing = [p for pair in pairs for p in pair if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{dataset}: {len(missing)} file(s) named by {source} are missing, first: {missing[0]}"
        )
    return tuple(pairs)


def files_by_stem(folder, extensions, dataset):
    """``{stem: path}`` of the files in ``folder`` with one of ``extensions``; a stem twice raises."""
    found = {}
    for path in sorted(Path(folder).iterdir()):
        if path.is_file() and path.suffix.lower() in extensions:
            if path.stem in found:
                raise ValueError(f"{dataset}: {found[path.stem]} and {path} have the same name stem")
            found[path.stem] = path
    return found
