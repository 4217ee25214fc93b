"""``tfseg train``: train a model as a YAML/JSON config file and/or flags say (``tfseg.training.train``)."""

from __future__ import annotations

import json

# flag -> TrainConfig key, for the options most runs set; every other key via --set KEY=VALUE.
FLAGS = {
    "--model": ("model", str),
    "--pretrained": ("pretrained", str),
    "--pretrained-weights": ("pretrained_weights", str),
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
    overrides = {key: getattr(args, key) for key, _ in FLAGS.values() if getattr(args, key) is not None}
    if args.model_options is not None:
        overrides["model_options"] = parse_value(args.model_options)
    if args.freeze_backbone:
        overrides["freeze_backbone"] = True
    if args.freeze_batch_norm:
        overrides["freeze_batch_norm"] = True
    if args.skip_damaged:
        overrides["skip_damaged"] = True
    for item in args.set or ():
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip().replace("-", "_")] = parse_value(value)
    return overrides


def run(args):
    """Check everything (config, data, resume, model) before any work or file; bad input and a stopped run
    (damaged file, lost worker) are one line. Any other error is a bug and keeps its traceback."""
    import sys

    from tfseg.training.config import config_from
    from tfseg.training.train import SETUP_ERRORS, InvalidRun, TrainingStopped, WorkerLost, train

    try:
        config = config_from(args.config, overrides_from_args(args))
    except SETUP_ERRORS as error:
        print(f"tfseg train: error: {error}", file=sys.stderr)
        return 2
    try:
        train(config, restart=args.restart, extend=args.extend)
    except (InvalidRun, TrainingStopped) as error:
        print(f"tfseg train: error: {error}", file=sys.stderr)
        return 1 if isinstance(error, WorkerLost) else 2
    return 0


def register(subparsers):
    parser = subparsers.add_parser("train", help="train a model (resumes from its last checkpoint)")
    parser.add_argument("--config", help="YAML or JSON file of training options (see tfseg.training.TrainConfig)")
    for flag, (key, kind) in FLAGS.items():
        parser.add_argument(flag, dest=key, type=kind, default=None)
    parser.add_argument("--model-options", help='JSON object of builder options, e.g. \'{"backbone": "mobilenet_v2"}\'')
    parser.add_argument("--freeze-backbone", action="store_true")
    parser.add_argument("--freeze-batch-norm", action="store_true")
    parser.add_argument("--skip-damaged", action="store_true",
                        help="leave out image/label files that are truncated or not images (counted in the summary); "
                             "by default the first one stops the run, naming it")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="any other config key (repeatable)")
    resume = parser.add_mutually_exclusive_group()
    resume.add_argument("--restart", action="store_true",
                        help="delete the checkpoints in --out and start over (a changed configuration is refused otherwise)")
    resume.add_argument("--extend", action="store_true",
                        help="continue the run in --out to new --steps/--epochs (the poly schedule is recomputed for the "
                             "new length)")
    parser.set_defaults(func=run)
