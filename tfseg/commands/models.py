"""``tfseg models``: every architecture with its parameter count and output stride."""

from __future__ import annotations

import sys


def _options_text(options):
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "-"


def run(args):
    from tfseg.commands.progress import Progress
    from tfseg.registry import MODEL_VARIANTS, describe_variants

    print(f"building {len(MODEL_VARIANTS)} configurations with {args.num_classes} classes to count their parameters "
          "(about a minute)", file=sys.stderr, flush=True)
    rows = [("model", "options", "parameters", "output stride")]
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]), flush=True)
    with Progress(len(MODEL_VARIANTS), "models") as progress:
        for name, options, params, stride in describe_variants(args.num_classes):
            print(f"| {name} | {_options_text(options)} | {params:,} | {stride} |", flush=True)
            progress.update()
    print(f"\n{args.num_classes} classes, parameter counts include batch-norm statistics.")
    return 0


def register(subparsers):
    parser = subparsers.add_parser("models", help="table of every architecture with its parameter count and output stride")
    parser.add_argument("--num-classes", type=int, default=21)
    parser.set_defaults(func=run)
