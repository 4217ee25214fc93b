"""``tfseg export MODEL OUT --format saved_model|tflite``: export with a parity report beside the result."""

from __future__ import annotations

from tfseg.commands.arguments import reports_errors, size

EXPORT_FORMATS = ("saved_model", "tflite")


@reports_errors
def run(args):
    import tfseg.export
    from tfseg.export.parity import report_paths, report_text

    crf = True if args.crf else None
    if args.format == "saved_model":
        for option, value in (("--quantization", args.quantization != "none"), ("--calibration", args.calibration),
                              ("--input-size", args.input_size)):
            if value:
                raise ValueError(f"{option} applies to --format tflite")
        report = tfseg.export.saved_model(args.model, args.out, crf=crf, parity_data=args.parity,
                                          parity_limit=args.parity_limit)
    else:
        report = tfseg.export.tflite(
            args.model, args.out, quantization=args.quantization, representative_data=args.calibration,
            calibration_limit=args.calibration_limit, input_size=args.input_size, crf=crf,
            parity_data=args.parity, parity_limit=args.parity_limit, num_threads=args.threads)
    print(f"wrote {args.out}")
    print(report_text(report), end="")
    print("parity report: " + ", ".join(str(p) for p in report_paths(args.out)))
    return 0


def register(subparsers):
    from tfseg.export.to_tflite import DEFAULT_CALIBRATION_LIMIT, QUANTIZATIONS

    parser = subparsers.add_parser(
        "export", help="export a model to SavedModel or TFLite, with a parity report",
        description="Export MODEL to OUT: the file takes uint8 RGB pixels and returns labels and probabilities. "
                    "A parity report against the Keras model is written beside it (OUT.parity.json / .txt).")
    parser.add_argument("model", help="a .keras file, a zoo name (or, for --format tflite, a SavedModel folder exported by tfseg)")
    parser.add_argument("out", help="the SavedModel folder or .tflite file to write")
    parser.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default="none", help="TFLite only (default none)")
    parser.add_argument("--calibration", default=None,
                        help="int8 calibration images: a folder or a split such as camvid:train")
    parser.add_argument("--calibration-limit", type=int, default=DEFAULT_CALIBRATION_LIMIT,
                        help=f"use at most this many calibration images (default {DEFAULT_CALIBRATION_LIMIT})")
    parser.add_argument("--input-size", type=size, default=None, help="fixed HxW input for TFLite (default: dynamic)")
    parser.add_argument("--crf", action="store_true", help="put the dense CRF (tfseg's parameters) inside")
    parser.add_argument("--parity", default=None,
                        help="images for the parity report: a folder or a split such as camvid:val (default: synthetic)")
    parser.add_argument("--parity-limit", type=int, default=None, help="use at most this many parity images")
    parser.add_argument("--threads", type=int, default=None, help="TFLite interpreter threads for the parity run")
    parser.set_defaults(func=run)
