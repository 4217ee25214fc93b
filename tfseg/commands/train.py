"""``tfseg train``: train a model as a YAML/JSON config file and/or flags say (``tfseg.training.train``)."""

from __future__ import annotations

import json

# flag -> TrainConfig key, for the options most runs set; every other key via --set KEY=VALUE.
FLAGS = {
    "--model": ("model", str),
    "--pretrained": ("pretrained", str),
    "--dataset": ("dataset", str),
    "--data-root": ("data_root", str),
    "--crop": ("crop_size", str),
    "--batch-size": ("batch_size", int),
    "--steps": ("steps", int),
    "--epochs": ("epochs", int),
    "--optimizer": ("optimizer", str),
    "--learning-rate": ("learning_rate", float),
    "--strategy": ("strategy", str),
    "--out": ("out_dir", str),
    "--checkpoint-every": ("checkpoint_every", int),
    "--mixed-precision": ("mixed_precision", str),
    "--seed": ("seed", int),
}


def parse_value(text):
    """A --set value: JSON when it parses (numbers, lists, objects, true/false/null), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def overrides_from_args(args):
    overrides = {key: getattr(args, key) for key, _ in FLAGS.values()}
    if args.model_options is not None:
        overrides["model_options"] = parse_value(args.model_options)
    if args.freeze_backbone:
        overrides["freeze_backbone"] = True
    if args.freeze_batch_norm:
        overrides["freeze_batch_norm"] = True
    for item in args.set or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"tfseg train: --set expects KEY=VALUE, got {item!r}")
        overrides[key.strip().replace("-", "_")] = parse_value(value)
    return overrides


def run(args):
    from tfseg.training.config import load_config
    from tfseg.training.train import train

    try:
        config = load_config(args.config, **overrides_from_args(args))
    except (ValueError, FileNotFoundError, TypeError) as error:
        raise SystemExit(f"tfseg train: {error}") from None
    train(config)
    return 0


def register(subparsers):
    parser = subparsers.add_parser("train", help="train a model (resumes from its last checkpoint)")
    parser.add_argument("--config", help="YAML or JSON file of training options (see tfseg.training.TrainConfig)")
    for flag, (key, kind) in FLAGS.items():
        parser.add_argument(flag, dest=key, type=kind, default=None)
    parser.add_argument("--model-options", help='JSON object of builder options, e.g. \'{"backbone": "mobilenet_v2"}\'')
    parser.add_argument("--freeze-backbone", action="store_true")
    parser.add_argument("--freeze-batch-norm", action="store_true")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="any other config key (repeatable)")
    parser.set_defaults(func=run)
