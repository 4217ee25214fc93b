"""int8 against float on CamVid: val mean IoU of full-integer TFLite vs the Keras model, and latency.

For a model trained on CamVid (a .keras file, e.g. DeepLab v3+ MobileNetV2 from `tfseg train`):

1. exports float TFLite and full-integer int8 TFLite (calibrated on CamVid train images) at a fixed
   input size, each with its parity report on CamVid val (written beside the files);
2. prints the val mean IoU of Keras, float TFLite and int8 TFLite against the ground truth, and the
   int8 loss in points (goal: at most 1.0);
3. times float and int8 TFLite in the LiteRT interpreter in the same run, interleaved (goal: int8 at least
   2x faster).

    python tools/int8_camvid.py model.keras [--out runs/int8] [--threads 2] [--val-limit N]

Prints a summary and writes ``summary.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a .keras file of a model trained on CamVid")
    parser.add_argument("--out", default="runs/int8_camvid", help="folder for the .tflite files and reports")
    parser.add_argument("--size", default="360x480", help="fixed input HxW (CamVid's size by default)")
    parser.add_argument("--calibration", default="camvid:train", help="calibration images")
    parser.add_argument("--calibration-limit", type=int, default=100)
    parser.add_argument("--val-limit", type=int, default=None, help="first N val images (default: all 101)")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT interpreter threads")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs of each file, interleaved")
    args = parser.parse_args(argv)

    height, width = (int(v) for v in args.size.lower().split("x"))
    summary = float_and_int8(args.model, Path(args.out), (height, width), calibration=args.calibration,
                             calibration_limit=args.calibration_limit, val_limit=args.val_limit,
                             threads=args.threads, repeats=args.repeats)
    out = Path(args.out)
    val = summary["val"]
    keras_miou = summary["keras_mean_iou"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"val mean IoU on {val}: Keras {keras_miou:.2f}, float TFLite {summary['float_tflite_mean_iou']:.2f}, "
          f"int8 TFLite {summary['int8_tflite_mean_iou']:.2f} (loss {summary['int8_loss_points']:.2f} points; goal <= 1.0)")
    print(f"int8 labels agree with Keras on {summary['int8_pixel_agreement']:.2f}% of pixels")
    print(f"CPU: {summary['cpu']}")
    print(f"LiteRT, {args.threads} threads, {height}x{width}: float {summary['float_tflite_ms']:.1f} ms, "
          f"int8 {summary['int8_tflite_ms']:.1f} ms (int8 {summary['int8_speedup']:.2f}x faster; goal >= 2x)")
    return 0


def float_and_int8(model, out, size, *, calibration="camvid:train", calibration_limit=100, val_limit=None, threads=2,
                   repeats=20):
    """Export ``model`` (a .keras path or a keras.Model) to float and int8 TFLite in ``out``; their figures."""
    import numpy as np

    import tfseg.export
    from tfseg.bench.cpu import cpu_description
    from tfseg.bench.timing import interleaved_median_seconds
    from tfseg.inference.runners import TFLiteRunner

    height, width = size
    out.mkdir(parents=True, exist_ok=True)
    val = "camvid:val" + (f":{val_limit}" if val_limit else "")
    common = dict(input_size=(height, width), parity_data=val, num_threads=threads)
    print(f"float TFLite, parity on {val} ...", flush=True)
    float_report = tfseg.export.tflite(model, out / "float.tflite", **common)
    print(f"int8 TFLite, calibrated on {calibration} (first {calibration_limit}) ...", flush=True)
    int8_report = tfseg.export.tflite(model, out / "int8.tflite", quantization="int8",
                                      representative_data=calibration, calibration_limit=calibration_limit, **common)
    image = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    names = ("float", "int8")
    runners = [TFLiteRunner(out / f"{name}.tflite", num_threads=threads) for name in names]
    timed = interleaved_median_seconds([lambda runner=runner: runner(image) for runner in runners], repeats=repeats)
    seconds = dict(zip(names, timed))
    keras_miou = float_report["reference_mean_iou"]
    float_entry = float_report["formats"]["tflite"]
    int8_entry = int8_report["formats"]["tflite (int8)"]
    return {
        "model": str(getattr(model, "name", model)), "val": val, "size": [height, width], "threads": threads,
        "keras_mean_iou": keras_miou,
        "float_tflite_mean_iou": float_entry["mean_iou"],
        "float_tflite_pixel_agreement": float_entry["pixel_agreement"],
        "int8_tflite_mean_iou": int8_entry["mean_iou"],
        "int8_loss_points": keras_miou - int8_entry["mean_iou"],
        "int8_pixel_agreement": int8_entry["pixel_agreement"],
        "float_tflite_ms": seconds["float"] * 1e3,
        "int8_tflite_ms": seconds["int8"] * 1e3,
        "int8_speedup": seconds["float"] / seconds["int8"],
        "cpu": cpu_description(),
    }


if __name__ == "__main__":
    sys.exit(main())
