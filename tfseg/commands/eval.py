"""``tfseg eval``: per-class IoU and the four scores of any model format on a dataset split, with pictures."""

from __future__ import annotations

import json
import sys

from tfseg.commands.arguments import add_crf_argument, positive_int, reports_errors, size
from tfseg.commands.train import parse_value


def parse_scales(text):
    if text in (None, "", "1", "1.0"):
        return (1.0,)
    if text == "deeplab":
        from tfseg.inference.modes import DEEPLAB_EVAL_SCALES

        return DEEPLAB_EVAL_SCALES
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--scales {text!r}: expected comma-separated numbers or 'deeplab'") from None


def inference_options(args):
    """The ``InferenceOptions`` of --scales, --flip, --window, --protocol (invalid combinations refused as in the API)."""
    from tfseg.inference.modes import InferenceOptions
    from tfseg.inference.protocol import parse_protocol

    return InferenceOptions(scales=parse_scales(args.scales), flip=args.flip, window=args.window,
                            protocol=parse_protocol(args.protocol))


def crf_options(args):
    """None without --crf; else the mode ("fast" or "exact"), or --crf-params (DenseCRF options) as given."""
    if args.crf_params and not args.crf:
        raise ValueError("--crf-params applies with --crf")
    if not args.crf:
        return None
    if not args.crf_params:
        return args.crf
    params = parse_value(args.crf_params)
    if not isinstance(params, dict):
        raise ValueError(f"--crf-params must be a JSON object, got {args.crf_params!r}")
    return params


def say(text):
    print(text, file=sys.stderr, flush=True)


@reports_errors
def run(args):
    from tfseg.commands.progress import Progress
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource
    from tfseg.inference.evaluation import check_classes, evaluate
    from tfseg.inference.predict import Predictor
    from tfseg.inference.report import write_overlays, write_report
    from tfseg.training.strategy import make_strategy

    options = inference_options(args)
    crf = crf_options(args)
    strategy = make_strategy(args.strategy, args.logical_cpus)
    say(f"loading {args.model}")
    with strategy.scope():
        predictor = Predictor(args.model, options=options, num_threads=args.threads)
    info = predictor.info
    name = args.dataset or info.dataset or "camvid"
    if args.dataset_options:
        reader_options = parse_value(args.dataset_options)
        if not isinstance(reader_options, dict):
            raise ValueError(f"--dataset-options must be a JSON object, got {args.dataset_options!r}")
    else:
        reader_options = dict(info.dataset_options) if name == info.dataset else {}
    dataset = open_dataset(name, args.data_root, **reader_options)
    check_classes(predictor.num_classes, dataset, f"{args.model}")
    source = ExampleSource(dataset, args.split, limit=args.limit)
    say(f"reading {len(source)} images of {dataset.name} {args.split}")
    with Progress(len(source), "images read") as bar:
        source.load_all(progress=lambda done: bar.update(done - bar.done))
    runs = {"plain": predictor}
    if crf is not None:
        runs["crf"] = Predictor(predictor.runner, options=options, crf=crf)
    results = {}
    for label, run_predictor in runs.items():
        crf_text = f", then the {run_predictor.crf_layer.describe()}" if label == "crf" else ""
        say(f"evaluating {predictor.runner.name} ({predictor.runner.format}): {options.describe(predictor.protocol)}"
            f"{crf_text}; batch {args.batch_size} over {strategy.num_replicas_in_sync} replica(s)")
        with Progress(len(source), "images") as bar:
            results[label] = evaluate(run_predictor, source, batch_size=args.batch_size, strategy=strategy,
                                      progress=lambda done: bar.update(done - bar.done))
    show = say if args.json else print  # with --json, stdout holds the JSON only
    for label, result in results.items():
        show(f"\n{label} ({len(source)} images of {dataset.name} {args.split}):\n{result.table()}")
    if args.out:
        path = write_report(results, args.out, dataset.class_names)
        write_overlays(runs.get("crf", predictor), source, args.out, count=args.overlays)
        show(f"\nreport written to {path.parent}")
    if args.json:
        print(json.dumps({label: {**r.scores, "per_class_iou": r.per_class_iou()} for label, r in results.items()}))
    return 0


def register(subparsers):
    parser = subparsers.add_parser(
        "eval", help="evaluate a model (any format) on a dataset split: per-class IoU and 4 scores",
        description="Score MODEL (.keras, SavedModel folder, .tflite or zoo name) on a dataset split. A zoo model is "
                    "fed as its card says (the official cards: padded to the crop, ADE20K resized first).")
    parser.add_argument("model", help="a .keras file, a SavedModel folder, a .tflite file or a zoo name (zoo:NAME or NAME)")
    parser.add_argument("--dataset", help="dataset reader (default: the model's own dataset, else camvid)")
    parser.add_argument("--data-root")
    parser.add_argument("--dataset-options", help="JSON object of reader options (default: the model's, e.g. ADE20K's "
                                                  "reduce_zero_label for the official card)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=positive_int, help="evaluate the first N examples only")
    parser.add_argument("--batch-size", type=positive_int, default=1,
                        help="images per step, split across replicas (the scores do not depend on it)")
    parser.add_argument("--scales", help="comma-separated, or 'deeplab' for 0.5,0.75,...,1.75 (default 1.0)")
    parser.add_argument("--flip", action="store_true", help="also average the left-right flipped image")
    parser.add_argument("--window", type=size, help="sliding-window inference with HxW crops (not with --scales/--flip)")
    parser.add_argument("--protocol", default="auto",
                        help="how images are fed: auto (the model's own: its card or file), whole, or pad:HxW")
    add_crf_argument(parser, "also evaluate")
    parser.add_argument("--crf-params", help="JSON object of DenseCRF options (default: a zoo card's tuned ones, else tfseg's)")
    parser.add_argument("--strategy", default="default")
    parser.add_argument("--logical-cpus", type=int, default=0)
    parser.add_argument("--threads", type=positive_int, default=None, help="TFLite interpreter threads")
    parser.add_argument("--out", help="folder for metrics.json, confusion pictures and overlays")
    parser.add_argument("--overlays", type=int, default=4)
    parser.add_argument("--json", action="store_true", help="print the scores and per-class IoU as one JSON line")
    parser.set_defaults(func=run)
