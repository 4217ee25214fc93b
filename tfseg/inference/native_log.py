"""Silencing the C++ log lines of the TFLite converter and the LiteRT interpreter.

They write straight to file descriptor 2 ("Reading SavedModel from...", "Created TensorFlow Lite
XNNPACK delegate"), past Python's logging. Their errors still reach the user as Python
exceptions, raised after the descriptor is restored. ``TFSEG_SHOW_NATIVE_LOG=1`` keeps them.
"""

from __future__ import annotations

import contextlib
import os

from tfseg._startup import stderr_to_devnull


@contextlib.contextmanager
def silenced_native_stderr():
    if os.environ.get("TFSEG_SHOW_NATIVE_LOG") == "1":
        yield
        return
    with stderr_to_devnull():
        yield
