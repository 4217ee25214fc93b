"""``tfseg eval``: per-class IoU and the four scores of a model on a dataset split, with pictures."""

from __future__ import annotations

import json

from tfseg.commands.arguments import reports_errors
from tfseg.commands.train import parse_value


def parse_scales(text):
    if text in (None, "", "1", "1.0"):
        return (1.0,)
    if text == "deeplab":
        from tfseg.training.evaluate import DEEPLAB_EVAL_SCALES

        return DEEPLAB_EVAL_SCALES
    return tuple(float(v) for v in text.split(","))


def crf_options(args, tuned=None):
    """The CRF options: --crf-params, else the zoo card's tuned parameters (``tuned``), else tfseg's."""
    if not args.crf:
        return None
    params = dict(tuned or {})
    if args.crf_params:
        params = parse_value(args.crf_params)
        if not isinstance(params, dict):
            raise SystemExit(f"tfseg eval: --crf-params must be a JSON object, got {args.crf_params!r}")
    return params


def _load(model, strategy):
    """(model, the card's CRF parameters or None) for a .keras file or a zoo name (``zoo:NAME`` or NAME)."""
    from pathlib import Path

    from tfseg import zoo
    from tfseg.inference.runners import load_keras_model

    name = model[len("zoo:"):] if model.startswith("zoo:") else model
    with strategy.scope():
        if not Path(model).exists() and name in zoo.list():
            return zoo.load(name), zoo.card(name).crf
        return load_keras_model(model), None


@reports_errors
def run(args):
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource
    from tfseg.training.config import _pair
    from tfseg.training.evaluate import evaluate_source
    from tfseg.training.report import write_overlays, write_report
    from tfseg.training.strategy import make_strategy

    strategy = make_strategy(args.strategy, args.logical_cpus)
    options = parse_value(args.dataset_options) if args.dataset_options else {}
    dataset = open_dataset(args.dataset, args.data_root, **options)
    source = ExampleSource(dataset, args.split, limit=args.limit).load_all()
    model, tuned_crf = _load(args.model, strategy)
    inference = {"scales": parse_scales(args.scales), "flip": args.flip}
    if args.window:
        inference = {"window": _pair(args.window, "--window")}
    results = {"plain": evaluate_source(model, source, batch_size=args.batch_size, strategy=strategy, **inference)}
    crf = crf_options(args, tuned_crf)
    if crf is not None:
        results["crf"] = evaluate_source(model, source, batch_size=args.batch_size, strategy=strategy, crf=crf,
                                         **inference)
    for name, result in results.items():
        print(f"\n{name} ({len(source)} images of {dataset.name} {args.split}):\n{result.table()}")
    if args.out:
        path = write_report(results, args.out, dataset.class_names)
        write_overlays(model, source, args.out, count=args.overlays, crf=crf, **inference)
        print(f"\nreport written to {path.parent}")
    if args.json:
        print(json.dumps({name: r.scores for name, r in results.items()}))
    return 0


def register(subparsers):
    parser = subparsers.add_parser("eval", help="evaluate a model on a dataset split (per-class IoU, 4 scores)")
    parser.add_argument("model", help="a .keras file or a zoo name (zoo:NAME or NAME; see tfseg zoo list)")
    parser.add_argument("--dataset", default="camvid")
    parser.add_argument("--data-root")
    parser.add_argument("--dataset-options", help="JSON object of reader options")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, help="evaluate the first N examples only")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--scales", help="comma-separated, or 'deeplab' for 0.5,0.75,...,1.75 (default 1.0)")
    parser.add_argument("--flip", action="store_true", help="also average the left-right flipped image")
    parser.add_argument("--window", help="sliding-window inference with HxW crops")
    parser.add_argument("--crf", action="store_true", help="also evaluate with the dense CRF")
    parser.add_argument("--crf-params", help="JSON object of DenseCRF options (default: a zoo card's tuned ones, else tfseg's)")
    parser.add_argument("--strategy", default="default")
    parser.add_argument("--logical-cpus", type=int, default=0)
    parser.add_argument("--out", help="folder for metrics.json, confusion pictures and overlays")
    parser.add_argument("--overlays", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print the scores as one JSON line at the end")
    parser.set_defaults(func=run)
