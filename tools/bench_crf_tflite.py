"""Wall time of the builtin-only dense CRF in the LiteRT interpreter against pydensecrf2, in one process.

``dense_crf(implementation="portable")`` at 360x480 with 12 labels is converted to a TFLite file
with TFLITE_BUILTINS only (fixed input shapes [1, 360, 480, 3] uint8 and [1, 360, 480, 12] float32)
and run by ``ai_edge_litert``'s interpreter with ``--threads`` threads (XNNPACK on). Cases:

- camvid: CamVid val image 0 with the unary from its ground truth by ``corrupted_unary``
  (tools/crf_unaries.py, seed 0, 12 labels as tools/bench_crf.py);
- noisy: a uniform-noise RGB image (seed 0) with the same unary; its bilateral lattice has about
  27 times as many vertices as the CamVid image's.

pydensecrf's README parameters (Gaussian sxy 3 compat 3, bilateral sxy 80 srgb 13 compat 10)
unless ``--deeplab``. Lattice construction is included on both sides (pydensecrf: DenseCRF2D,
setUnaryEnergy, addPairwise*, inference; TFLite: one ``invoke`` on new inputs). Each side runs
``--repeats`` times, interleaved; the medians give the ratio TFLite / pydensecrf2 (wall time) and
the same ratio of process CPU time (less sensitive to other processes on a shared machine; with one
interpreter thread it is the work done). Agreement: labels of the TFLite output against
pydensecrf2's; parity: max |TFLite - TF| of the marginals.

    python tools/bench_crf_tflite.py [--repeats 7] [--iterations 10] [--threads 2]
    python tools/bench_crf_tflite.py --profile     # build vs iterations, per case
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

README = dict(gaussian_sxy=3.0, gaussian_compat=3.0, bilateral_sxy=80.0, bilateral_srgb=13.0, bilateral_compat=10.0)
DEEPLAB = dict(gaussian_sxy=3.0, gaussian_compat=3.0, bilateral_sxy=20.0, bilateral_srgb=3.0, bilateral_compat=3.0)
LABELS = 12


def make_cases():
    from crf_unaries import corrupted_unary

    from tfseg.data.camvid import load_split

    images, labels = load_split("val", limit=1)
    unary = corrupted_unary(labels[0], LABELS, seed=0)
    noisy = np.random.default_rng(0).integers(0, 256, images[0].shape, dtype=np.uint8)
    return [("camvid", images[0], unary), ("noisy", noisy, unary)]


def pydensecrf_marginals(image, unary, iterations, params):
    import pydensecrf.densecrf as dcrf

    height, width, labels = unary.shape
    crf = dcrf.DenseCRF2D(width, height, labels)
    crf.setUnaryEnergy(np.ascontiguousarray(unary.reshape(-1, labels).T))
    crf.addPairwiseGaussian(sxy=params["gaussian_sxy"], compat=params["gaussian_compat"])
    crf.addPairwiseBilateral(sxy=params["bilateral_sxy"], srgb=params["bilateral_srgb"],
                             rgbim=np.ascontiguousarray(image), compat=params["bilateral_compat"])
    return np.array(crf.inference(iterations)).T.reshape(height, width, labels)


def input_shapes(unary_shape):
    """[image shape, unary shape] with a batch of one."""
    return [(1,) + unary_shape[:2] + (3,), (1,) + unary_shape]


def export_shapes(shapes, args):
    """The shapes the file is converted with: as given, or height and width left dynamic."""
    if not args.dynamic_size:
        return shapes
    return [(shape[0], None, None, shape[3]) for shape in shapes]


def convert(function, shapes):
    """TFLite flatbuffer (builtin ops only) of a tf.function of uint8 image and float32 unary."""
    import tensorflow as tf

    specs = [tf.TensorSpec(shapes[0], tf.uint8), tf.TensorSpec(shapes[1], tf.float32)]
    concrete = tf.function(function, input_signature=specs).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


class TFLiteRunner:
    """One interpreter for a converted (image, unary) -> output file, inputs sized to ``shapes``."""

    def __init__(self, content, threads, shapes):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_content=content, num_threads=threads)
        self.inputs = self.interpreter.get_input_details()
        for detail in self.inputs:
            self.interpreter.resize_tensor_input(detail["index"], shapes[0] if detail["dtype"] == np.uint8 else shapes[1])
        self.interpreter.allocate_tensors()
        self.output = self.interpreter.get_output_details()[0]["index"]

    def __call__(self, image, unary):
        for detail in self.inputs:
            self.interpreter.set_tensor(detail["index"], image[None] if detail["dtype"] == np.uint8 else unary[None])
        self.interpreter.invoke()
        output = self.interpreter.get_tensor(self.output)
        return output[0] if output.ndim else output


def crf_function(iterations, params, gaussian_filter):
    from tfseg.crf import dense_crf

    return lambda image, unary: dense_crf(image, unary, iterations=iterations, implementation="portable",
                                          gaussian_filter=gaussian_filter, **params)


def benchmark(args, params):
    import tensorflow as tf

    cases = make_cases()
    shapes = input_shapes(cases[0][2].shape)
    content = convert(crf_function(args.iterations, params, args.gaussian_filter), export_shapes(shapes, args))
    runner = TFLiteRunner(content, args.threads, shapes)
    reference_tf = tf.function(crf_function(args.iterations, params, args.gaussian_filter))
    size = "dynamic-size" if args.dynamic_size else "fixed-size"
    print(f"TFLite ({size} file, builtins only, {len(content) / 1e6:.1f} MB), {args.threads} threads, "
          f"{args.iterations} iterations, gaussian_filter={args.gaussian_filter}, params {params}; "
          f"median of {args.repeats} interleaved runs; load average {os.getloadavg()[0]:.1f}")
    print(f"{'case':<8} {'tflite s':>9} {'pydensecrf s':>13} {'ratio':>6} {'agree %':>8} {'|tflite - tf|':>14} "
          f"{'cpu ratio':>10}")
    for name, image, unary in cases:
        ours = runner(image, unary)
        reference = pydensecrf_marginals(image, unary, args.iterations, params)
        tf_marginals = reference_tf(tf.constant(image[None]), tf.constant(unary[None])).numpy()[0]
        ours_times, reference_times, ours_cpu, reference_cpu = [], [], [], []
        for _ in range(args.repeats):
            for run, wall, cpu in ((lambda: runner(image, unary), ours_times, ours_cpu),
                                   (lambda: pydensecrf_marginals(image, unary, args.iterations, params),
                                    reference_times, reference_cpu)):
                start, start_cpu = time.perf_counter(), time.process_time()
                run()
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
        ours_s, reference_s = statistics.median(ours_times), statistics.median(reference_times)
        cpu_ratio = statistics.median(ours_cpu) / statistics.median(reference_cpu)
        agreement = 100.0 * np.mean(ours.argmax(-1) == reference.argmax(-1))
        parity = np.abs(ours - tf_marginals).max()
        print(f"{name:<8} {ours_s:>9.3f} {reference_s:>13.3f} {ours_s / reference_s:>6.2f} {agreement:>8.3f} "
              f"{parity:>14.1e} {cpu_ratio:>10.2f}   (min {min(ours_times):.3f} / {min(reference_times):.3f})",
              flush=True)


def profile(args, params):
    """Build only, 0, 1 and N iterations in TFLite, and pydensecrf with 0 and N iterations, interleaved."""
    import tensorflow as tf

    from tfseg.crf import PairwiseFilters

    cases = make_cases()
    shapes = input_shapes(cases[0][2].shape)
    kernels = [(params["gaussian_sxy"], None), (params["bilateral_sxy"], params["bilateral_srgb"])]

    def build_only(image, unary):
        filters = PairwiseFilters(image, kernels, "portable", args.gaussian_filter)
        outputs = [filters.splat_weights, filters.slice_weights, filters.entry_rows] + [
            index for pair in filters.blur_indices for index in pair]
        return tf.add_n([tf.reduce_sum(tf.cast(o, tf.float32)) for o in outputs]) + 0.0 * tf.reduce_sum(unary)

    exported = export_shapes(shapes, args)
    runners = {"build (lattices, normalisations)": TFLiteRunner(convert(build_only, exported), args.threads, shapes)}
    for iterations in sorted({0, 1, args.iterations}):
        runners[f"dense_crf, {iterations} iterations"] = TFLiteRunner(
            convert(crf_function(iterations, params, args.gaussian_filter), exported), args.threads, shapes)
    for name, image, unary in cases:
        runs = dict(runners)
        for n in (0, args.iterations):
            runs[f"pydensecrf, {n} iterations"] = lambda image, unary, n=n: pydensecrf_marginals(image, unary, n, params)
        times = {label: [] for label in runs}
        cpu = {label: [] for label in runs}
        for _ in range(args.repeats):
            for label, run in runs.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                run(image, unary)
                times[label].append(time.perf_counter() - start)
                cpu[label].append(time.process_time() - start_cpu)
        print(f"{name}: wall median (min), cpu median; load average {os.getloadavg()[0]:.1f}")
        for label in runs:
            print(f"  {label:<36} {statistics.median(times[label]):.3f} s ({min(times[label]):.3f}), "
                  f"cpu {statistics.median(cpu[label]):.3f} s", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="interpreter threads (XNNPACK)")
    parser.add_argument("--gaussian-filter", default="auto", choices=["auto", "convolution", "lattice"])
    parser.add_argument("--deeplab", action="store_true",
                        help="the grid-searched CamVid parameters (bilateral sxy 20, srgb 3, compat 3)")
    parser.add_argument("--dynamic-size", action="store_true",
                        help="convert with dynamic height and width (the spatial lattice is then built at run "
                             "time; a fixed-size file carries it as constants)")
    parser.add_argument("--profile", action="store_true", help="build vs iterations instead of the benchmark")
    args = parser.parse_args(argv)
    params = DEEPLAB if args.deeplab else README
    if args.profile:
        return profile(args, params)
    return benchmark(args, params)


if __name__ == "__main__":
    main()
