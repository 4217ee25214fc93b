"""``tfseg predict MODEL INPUT --out DIR``: label PNGs and colour overlays for an image, a folder, a split or a video."""

from __future__ import annotations

import sys
from pathlib import Path

from tfseg.commands.arguments import add_crf_argument, positive_int, reports_errors, size


def _samples(source, limit, reader_options):
    """(samples iterator, count or None, unit) of an image, a folder, a dataset split or a video."""
    from tfseg.inference import sources

    path = Path(source)
    if path.is_file() and path.suffix.lower() in sources.VIDEO_SUFFIXES:
        sources.open_video(path).release()  # fail now, before the model is loaded
        count = sources.video_frame_count(path)
        count = min(count, limit) if limit and count else (limit or count or None)
        return sources.video_frames(path, limit), count, "frames"
    options = {"reader_options": reader_options}
    return sources.iter_samples(source, limit, **options), sources.count_samples(source, limit, **options), "images"


@reports_errors
def run(args):
    from tfseg.commands.eval import inference_options
    from tfseg.commands.progress import Progress
    from tfseg.inference import Predictor
    from tfseg.inference.outputs import write_legend, write_prediction
    from tfseg.inference.sources import parse_dataset_split

    options = inference_options(args)
    split = parse_dataset_split(args.input)
    if split is None:  # a bad image source fails before the model is loaded
        samples, count, unit = _samples(args.input, args.limit, None)
    print(f"loading {args.model}", file=sys.stderr, flush=True)
    predictor = Predictor(args.model, crf=args.crf, options=options, num_threads=args.threads)
    info = predictor.info
    if split is not None:  # read with the model's reader options (ADE20K's numbering for the official card)
        samples, count, unit = _samples(args.input, args.limit, dict(info.dataset_options)
                                        if split.dataset == info.dataset else None)
    colors = info.colors(predictor.num_classes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = info.names(predictor.num_classes)
    write_legend(out, names, colors)
    print(f"{predictor.runner.name} ({predictor.runner.format}, {predictor.num_classes} classes"
          f"{', ' + info.dataset if info.dataset else ''}): {options.describe(predictor.protocol)}"
          f"{', then the ' + predictor.crf_layer.describe() if predictor.crf_layer is not None else ''}", file=sys.stderr, flush=True)
    written = 0
    with Progress(count, unit) as progress:
        for sample in samples:
            labels, _ = predictor(sample.image)
            write_prediction(out, sample.name, sample.image, labels, colors, args.alpha)
            written += 1
            progress.update()
    print(f"wrote {written} label maps and overlays ({unit}) to {out}, colours in legend.png and classes.txt")
    return 0


def register(subparsers):
    parser = subparsers.add_parser(
        "predict", help="label PNGs and colour overlays for an image, a folder of images, a split or a video",
        description="Run MODEL (.keras, SavedModel folder, .tflite or a zoo name) on INPUT and write <name>_labels.png "
                    "(class ids) and <name>_overlay.png for each image or video frame, in the model's colours, with "
                    "legend.png and classes.txt. The model is fed as its card or file says (--protocol overrides).")
    parser.add_argument("model", help="a .keras file, a SavedModel folder, a .tflite file exported by tfseg, or a zoo name")
    parser.add_argument("input", help="an image, a folder of images, a video file, or a split such as camvid:val, "
                                      "voc:val, folder:PATH")
    parser.add_argument("--out", required=True, help="output folder")
    add_crf_argument(parser, "refine the labels")
    parser.add_argument("--scales", help="comma-separated, or 'deeplab' for 0.5,0.75,...,1.75 (default 1.0)")
    parser.add_argument("--flip", action="store_true", help="also average the left-right flipped image")
    parser.add_argument("--window", type=size, help="sliding-window inference with HxW crops (not with --scales/--flip)")
    parser.add_argument("--protocol", default="auto",
                        help="how images are fed: auto (the model's own: its card or file), whole, or pad:HxW")
    parser.add_argument("--threads", type=positive_int, default=None, help="TFLite interpreter threads")
    parser.add_argument("--limit", type=positive_int, default=None, help="at most this many images or frames")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay colour weight (default 0.5)")
    parser.set_defaults(func=run)
