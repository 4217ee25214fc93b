"""``tfseg predict MODEL INPUT --out DIR``: label PNGs and colour overlays for an image, a folder or a video."""

from __future__ import annotations

from pathlib import Path

from tfseg.commands.arguments import reports_errors


def _samples(source, limit):
    """(samples iterator, count or None, unit) of an image, a folder, a dataset split or a video."""
    from tfseg.inference import sources

    path = Path(source)
    if path.is_file() and path.suffix.lower() in sources.VIDEO_SUFFIXES:
        count = sources.video_frame_count(path)
        count = min(count, limit) if limit and count else (limit or count or None)
        return sources.video_frames(path, limit), count, "frames"
    return sources.iter_samples(source, limit), sources.count_samples(source, limit), "images"


def _is_zoo_name(model):
    from tfseg import zoo

    return not Path(model).exists() and model in zoo.list()


def _zoo_palette(name):
    from tfseg import zoo

    return zoo.card(name).palette


@reports_errors
def run(args):
    from tfseg.commands.progress import Progress
    from tfseg.inference import Predictor
    from tfseg.inference.outputs import palette, write_prediction

    samples, count, unit = _samples(args.input, args.limit)
    predictor = Predictor(args.model, crf=True if args.crf else None, num_threads=args.threads)
    colors = _zoo_palette(args.model) if _is_zoo_name(args.model) else palette(predictor.num_classes)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    with Progress(count, unit) as progress:
        for sample in samples:
            labels, _ = predictor(sample.image)
            write_prediction(out, sample.name, sample.image, labels, colors, args.alpha)
            written += 1
            progress.update()
    print(f"wrote {written} label maps and overlays ({unit}) to {out}")
    return 0


def register(subparsers):
    parser = subparsers.add_parser(
        "predict", help="label PNGs and colour overlays for an image, a folder of images or a video",
        description="Run MODEL (.keras, SavedModel folder, .tflite or a zoo name) on INPUT and write <name>_labels.png "
                    "(class ids) and <name>_overlay.png for each image or video frame.")
    parser.add_argument("model", help="a .keras file, a SavedModel folder, a .tflite file exported by tfseg, or a zoo name")
    parser.add_argument("input", help="an image, a folder of images, a video file, or a split such as camvid:val")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--crf", action="store_true", help="refine with the dense CRF (tfseg's parameters; a zoo model's tuned ones)")
    parser.add_argument("--threads", type=int, default=None, help="TFLite interpreter threads")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images or frames")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay colour weight (default 0.5)")
    parser.set_defaults(func=run)
