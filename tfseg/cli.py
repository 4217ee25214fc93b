"""The ``tfseg`` command."""

from __future__ import annotations

import argparse
import os
import sys


def _options_text(options):
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "-"


def cmd_models(args):
    from tfseg.registry import describe_variants

    rows = [("model", "options", "parameters", "output stride")]
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for name, options, params, stride in describe_variants(args.num_classes):
        print(f"| {name} | {_options_text(options)} | {params:,} | {stride} |", flush=True)
    print(f"\n{args.num_classes} classes, parameter counts include batch-norm statistics.")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="tfseg", description="Semantic segmentation for TensorFlow / Keras")
    sub = parser.add_subparsers(dest="command", required=True)
    models = sub.add_parser("models", help="table of every architecture with its parameter count and output stride")
    models.add_argument("--num-classes", type=int, default=21)
    models.set_defaults(func=cmd_models)
    return parser


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
