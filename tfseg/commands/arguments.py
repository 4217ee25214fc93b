"""Argument types and error reporting shared by sub-commands."""

from __future__ import annotations

import argparse
import ast
import functools
import sys


def size(text):
    """``"HxW"`` (or one number for a square) -> (H, W)."""
    parts = text.lower().split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 360x480; got {text!r}")
    return values


def positive_int(text):
    """A positive integer argument (``--threads``, ``--batch-size``, ``--limit``), else a usage error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or str(value) != text.strip():
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def key_value(text):
    """``"key=value"`` -> (key, value), the value read as a Python literal when it is one."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE; got {text!r}")
    key, value = text.split("=", 1)
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass
    return key.strip(), value


def add_crf_argument(parser, what):
    """``--crf [exact|fast]``: bare ``--crf`` is the fast mode (the card's tuned one for a zoo model)."""
    parser.add_argument("--crf", nargs="?", const="fast", default=None, choices=("exact", "fast"),
                        help=f"{what} with the dense CRF: 'fast' (the default: mean field at reduced resolution, what a "
                             "robot can afford) or 'exact' (full resolution, as pydensecrf); a zoo model's tuned "
                             "parameters of that mode, else tfseg's")


def reports_errors(command):
    """Print errors from bad input as one line (``tfseg NAME: error: ...``) and return 2, not a stack trace."""

    @functools.wraps(command)
    def run(args):
        try:
            return command(args)
        except (ValueError, TypeError, FileNotFoundError, FileExistsError, ImportError, OSError) as error:
            print(f"tfseg {args.command}: error: {error}", file=sys.stderr)
            return 2

    return run
