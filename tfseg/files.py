"""Writes that cannot be half done: write a temporary name beside the target, then rename it into place.

``os.replace`` is atomic on one file system, so a reader (or a resumed run) sees either the old
file or the new one, never a file cut off by a kill, a full disk or an exception mid-write.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


@contextlib.contextmanager
def replacing(path):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    Works for files and folders (a SavedModel): an existing folder is moved aside, the new one
    renamed into place, then the old one deleted.
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial{path.suffix}")
    _remove(temporary)
    try:
        yield temporary
        if temporary.is_dir() and path.exists():
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            _remove(old)
            os.replace(path, old)
            os.replace(temporary, path)
            _remove(old)
        else:
            os.replace(temporary, path)
    finally:
        _remove(temporary)


def write_text(path, text):
    """``Path(path).write_text(text)``, atomically."""
    with replacing(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def write_bytes(path, content):
    """``Path(path).write_bytes(content)``, atomically."""
    with replacing(path) as temporary:
        temporary.write_bytes(content)
    return Path(path)


def _remove(path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
