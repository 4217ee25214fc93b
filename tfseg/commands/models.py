"""``tfseg models``: every architecture with its parameter count and output stride."""

from __future__ import annotations


def _options_text(options):
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "-"


def run(args):
    from tfseg.registry import describe_variants

    rows = [("model", "options", "parameters", "output stride")]
    print("| " + " | ".join(rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for name, options, params, stride in describe_variants(args.num_classes):
        print(f"| {name} | {_options_text(options)} | {params:,} | {stride} |", flush=True)
    print(f"\n{args.num_classes} classes, parameter counts include batch-norm statistics.")
    return 0


def register(subparsers):
    parser = subparsers.add_parser("models", help="table of every architecture with its parameter count and output stride")
    parser.add_argument("--num-classes", type=int, default=21)
    parser.set_defaults(func=run)
