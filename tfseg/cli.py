"""The ``tfseg`` command.

Each sub-command lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func``; ``COMMAND_MODULES`` lists them, so adding a command is one line here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

COMMAND_MODULES = (
    "tfseg.commands.models",
    "tfseg.commands.train",
    "tfseg.commands.eval",
    "tfseg.commands.export",
    "tfseg.commands.predict",
    "tfseg.commands.bench",
    "tfseg.commands.demo",
    "tfseg.commands.zoo",
)


def quiet_tensorflow():
    """No TensorFlow/absl log noise on the console (the C++ start-up lines: ``tfseg._startup``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").setLevel(logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def build_parser():
    parser = argparse.ArgumentParser(prog="tfseg", description="Semantic segmentation for TensorFlow / Keras")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv=None):
    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
