"""``tfseg export MODEL OUT --format saved_model|tflite``: export with a parity report beside the result."""

from __future__ import annotations

import os
import sys
import time

from tfseg.commands.arguments import add_crf_argument, positive_int, reports_errors, size

EXPORT_FORMATS = ("saved_model", "tflite")


def _stderr_copy():
    """A stream to standard error that stays open while the converter silences file descriptor 2
    (``tfseg.inference.native_log``), so that calibration progress gets through; else stderr itself."""
    try:
        sys.stderr.flush()
        return os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1)
    except (AttributeError, OSError, ValueError):  # a stream without a descriptor (captured output)
        return sys.stderr


@reports_errors
def run(args):
    import tfseg.export
    from tfseg.export.parity import report_paths, report_text

    started = time.perf_counter()
    log = _stderr_copy()

    def progress(text):
        print(f"[{time.perf_counter() - started:5.0f} s] {text}", file=log, flush=True)

    crf = args.crf
    if args.format == "saved_model":
        for option, value in (("--quantization", args.quantization != "none"), ("--calibration", args.calibration),
                              ("--input-size", args.input_size), ("--threads", args.threads),
                              ("--standard-metadata", args.standard_metadata is not None)):
            if value:
                raise ValueError(f"{option} applies to --format tflite")
        report = tfseg.export.saved_model(args.model, args.out, crf=crf, parity_data=args.parity,
                                          parity_limit=args.parity_limit, progress=progress)
    else:
        report = tfseg.export.tflite(
            args.model, args.out, quantization=args.quantization, representative_data=args.calibration,
            calibration_limit=args.calibration_limit, input_size=args.input_size, crf=crf,
            parity_data=args.parity, parity_limit=args.parity_limit, num_threads=args.threads, progress=progress)
        if args.standard_metadata is not None:
            from tfseg.export.standard_metadata import add_standard_metadata

            progress("writing the standard TFLite metadata with MediaPipe's writer")
            add_standard_metadata(args.out, python=args.standard_metadata or None, **_card_record(args.model))
    progress(f"wrote {args.out}")
    if log is not sys.stderr:
        log.close()
    print(report_text(report), end="")
    print("parity report: " + ", ".join(str(p) for p in report_paths(args.out)))
    return 0


def _card_record(model):
    """The standard metadata's general record from the zoo card of ``model`` ({} for a file)."""
    import tfseg
    from tfseg import zoo

    if not isinstance(model, str) or model not in zoo.list_models():
        return {}
    card = zoo.card(model)
    weights = card.data.get("weights") or {}
    version = f"tfseg {tfseg.__version__}" + (f", weights sha256 {weights['sha256'][:16]}" if weights.get("sha256") else "")
    return {"name": card.name, "description": f"{card.title}. {card.data.get('paper', '')}".strip(),
            "version": version, "author": "tfseg", "license": weights.get("licence", "")}


def register(subparsers):
    from tfseg.export.to_tflite import DEFAULT_CALIBRATION_LIMIT, QUANTIZATIONS

    parser = subparsers.add_parser(
        "export", help="export a model to SavedModel or TFLite, with a parity report",
        description="Export MODEL to OUT: the file takes uint8 RGB pixels, returns labels and probabilities and carries "
                    "the model's classes, palette and input protocol. A parity report against the Keras model is "
                    "written beside it (OUT.parity.json / .txt).")
    parser.add_argument("model", help="a .keras file, a zoo name (or, for --format tflite, a SavedModel folder exported by tfseg)")
    parser.add_argument("out", help="the SavedModel folder or .tflite file to write")
    parser.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default="none", help="TFLite only (default none)")
    parser.add_argument("--calibration", default=None,
                        help="int8 calibration images: a folder or a split such as camvid:train, voc:train, folder:PATH")
    parser.add_argument("--calibration-limit", type=positive_int, default=DEFAULT_CALIBRATION_LIMIT,
                        help=f"calibrate on this many images, spread over a split (default {DEFAULT_CALIBRATION_LIMIT})")
    parser.add_argument("--input-size", type=size, default=None,
                        help="fixed HxW input for TFLite (default: dynamic, or an official card's canvas)")
    add_crf_argument(parser, "put inside the file the model refined")
    parser.add_argument("--parity", default=None,
                        help="images for the parity report: a folder or a split such as camvid:val (default: synthetic)")
    parser.add_argument("--parity-limit", type=positive_int, default=None, help="use at most this many parity images")
    parser.add_argument("--threads", type=positive_int, default=None, help="TFLite interpreter threads for the parity run")
    parser.add_argument("--standard-metadata", nargs="?", const="", default=None, metavar="PYTHON",
                        help="TFLite only: also write the standard TFLite metadata (name, licence, input, class "
                             "label file; what MediaPipe's ImageSegmenter reads) with MediaPipe's writer, run by "
                             "PYTHON (default $TFSEG_MEDIAPIPE_PYTHON, else this Python)")
    parser.set_defaults(func=run)
