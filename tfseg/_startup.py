"""Importing TensorFlow without its C++ start-up lines.

TensorFlow prints "oneDNN custom operations are on" and the CPU-feature notice from C++ before
its logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them. The standard-error file
descriptor is pointed at /dev/null while TensorFlow and Keras load (Python exceptions still
reach the user: they are raised after it is restored). ``TFSEG_SHOW_TF_STARTUP=1`` keeps them.
``TF_CPP_MIN_LOG_LEVEL`` defaults to 2 (errors only) when tfseg is imported before TensorFlow;
set it to 0 to see TensorFlow's info and warning lines.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def stderr_to_devnull():
    """Point file descriptor 2 at /dev/null for the block (a no-op where there is no such descriptor)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable file descriptor 2 (embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


@contextlib.contextmanager
def quiet_native_stderr():
    if os.environ.get("TFSEG_SHOW_TF_STARTUP") == "1" or "tensorflow" in sys.modules:
        yield
        return
    with stderr_to_devnull():
        yield


def import_tensorflow_quietly():
    if "tensorflow" not in sys.modules:
        # The `tfseg` command also hides TensorFlow's C++ error-level notices (e.g. oneDNN's kernel
        # fall-backs): Python exceptions still report real errors.
        command_line = os.path.basename(sys.argv[0] if sys.argv else "") == "tfseg"
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if command_line else "2")
    with quiet_native_stderr():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
