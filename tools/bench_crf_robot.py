"""The dense CRF on a robot: a zoo model's TFLite files at 360x480 with and without the CRF, against pydensecrf2.

    python tools/bench_crf_robot.py [--model camvid_unet] [--threads 1 2] [--repeats 10] [--frames N]

Exports the zoo model at 360x480 (``tfseg.export.tflite``, as ``tfseg export NAME OUT --format tflite
--input-size 360x480 [...]``): float, int8 (calibrated on 100 camvid:train frames), float with the
card's exact CRF inside (``--crf exact``) and float with its fast CRF inside (``--crf``, the
default). Each file runs in the LiteRT interpreter with each ``--threads`` count on a frame of the
held-out sequence 0006R0, all timed in turn (A, B, C, ... repeated) beside the float file followed
by pydensecrf2 (the reference C++ dense CRF, one thread) with the card's exact parameters on the
same unary (minus the log of the float file's probabilities). Then each is scored on 0006R0 (a
sequence the zoo U-Net never saw; ``--frames`` spread over it, default all 101): mean IoU of the
float network, int8, float + exact CRF, float + fast CRF and float + pydensecrf2.

The table gives milliseconds per frame and the ratio to the float network alone, same threads,
same run; the CPU is named on the first line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/: pydensecrf_reference

SIZE = (360, 480)
HOLDOUT = "0006R0"
CRF_COLUMN = {"": "none", "exact CRF": "exact, in the file", "fast CRF": "fast, in the file",
              "pydensecrf2 (exact)": "pydensecrf2 after it (exact, one thread)"}


def export_files(name, out, threads):
    """``{row: path}`` of the four TFLite files (re-exported every run)."""
    import tfseg.export

    out.mkdir(parents=True, exist_ok=True)
    files = {"float": out / "float.tflite", "int8": out / "int8.tflite",
             "float + exact CRF": out / "crf_exact.tflite", "float + fast CRF": out / "crf_fast.tflite"}
    settings = {"float": {}, "int8": dict(quantization="int8", representative_data="camvid:train", calibration_limit=100),
                "float + exact CRF": dict(crf="exact"), "float + fast CRF": dict(crf="fast")}
    for row, path in files.items():
        started = time.perf_counter()
        tfseg.export.tflite(name, path, input_size=SIZE, num_threads=threads, parity_limit=1, **settings[row])
        print(f"exported {row}: {path} ({time.perf_counter() - started:.0f} s)", flush=True)
    return files


def pydensecrf_labels(image, probabilities, params):
    """Labels of pydensecrf2's DenseCRF2D with the card's exact ``params`` on -log p."""
    from pydensecrf_reference import pydensecrf_marginals

    unary = -np.log(np.maximum(probabilities, 1e-30)).astype(np.float32)
    return pydensecrf_marginals(image, unary, int(params["iterations"]), params).argmax(-1)


def timings(files, image, params, threads, repeats):
    """``{row: seconds}`` for one thread count, every row timed in turn."""
    from tfseg.bench.timing import interleaved_median_seconds
    from tfseg.inference.runners import TFLiteRunner

    runners = {row: TFLiteRunner(path, num_threads=threads) for row, path in files.items()}
    network = runners["float"]
    rows = list(runners) + ["float + pydensecrf2 (exact)"]
    calls = [lambda r=r: r(image[None]) for r in runners.values()]
    calls.append(lambda: pydensecrf_labels(image, network(image[None])[1][0], params))
    return dict(zip(rows, interleaved_median_seconds(calls, repeats=repeats)))


def scores(files, source, params, threads):
    """``{row: mean IoU}`` on ``source`` (an ExampleSource), through the one inference path and pydensecrf2."""
    from tfseg.inference.evaluation import evaluate, image_confusion
    from tfseg.inference.runners import TFLiteRunner
    from tfseg.metrics import scores_from_confusion

    results = {}
    for row, path in files.items():
        started = time.perf_counter()
        results[row] = 100 * evaluate(str(path), source, num_threads=threads).scores["mean_iou"]
        print(f"{row}: mean IoU {results[row]:.2f} ({time.perf_counter() - started:.0f} s)", flush=True)
    network = TFLiteRunner(files["float"], num_threads=threads)
    confusion = 0
    for index in range(len(source)):
        image, label = source[index]
        labels = pydensecrf_labels(image, network(image[None])[1][0], params)
        confusion = confusion + image_confusion(label, labels, source.dataset.num_classes,
                                                 source.dataset.ignore_label).numpy()
    results["float + pydensecrf2 (exact)"] = 100 * float(scores_from_confusion(confusion)["mean_iou"].numpy())
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="camvid_unet", help="a CamVid zoo model")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--frames", type=int, default=None, help="score on this many 0006R0 frames (default all)")
    parser.add_argument("--out", default="runs/bench_crf_robot", help="folder for the TFLite files")
    args = parser.parse_args(argv)

    from tfseg import zoo
    from tfseg.bench.cpu import cpu_description
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource, spread_sample

    card = zoo.card(args.model)
    exact, fast = card.crf_options("exact"), card.crf_options("fast")
    print(f"CPU: {cpu_description()}\n{args.model}: exact CRF {exact}; fast CRF {fast}", flush=True)
    files = export_files(args.model, Path(args.out), max(args.threads))
    source = ExampleSource(open_dataset("camvid", holdout=HOLDOUT), "val")
    if args.frames:
        source.pairs = tuple(source.pairs[i] for i in spread_sample(len(source), args.frames))
    image = source[0][0]
    times = {threads: timings(files, image, exact, threads, args.repeats) for threads in args.threads}
    ious = scores(files, source, exact, max(args.threads))
    header = " | ".join(f"{t} thread{'s' if t > 1 else ''}: ms (x float)" for t in args.threads)
    print(f"\n{args.model} at 360x480, LiteRT; mean IoU on {len(source)} frames of {HOLDOUT} (never seen in training)")
    print(f"| network | dense CRF | {header} | {HOLDOUT} mIoU |\n|---|---|{'---|' * len(args.threads)}---|")
    for row in times[args.threads[0]]:
        cells = " | ".join(f"{1e3 * times[t][row]:.1f} ({times[t][row] / times[t]['float']:.2f}x)" for t in args.threads)
        network, _, crf = row.partition(" + ")
        print(f"| {network} | {CRF_COLUMN.get(crf, crf)} | {cells} | {ious[row]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
