"""Wall time of the builtin-only dense CRF in the LiteRT interpreter against pydensecrf2, in one process.

``dense_crf(implementation="portable")`` at 360x480 with 12 labels is converted to a TFLite file
with TFLITE_BUILTINS only (fixed input shapes [1, 360, 480, 3] uint8 and [1, 360, 480, 12] float32)
and run by ``ai_edge_litert``'s interpreter with ``--threads`` threads (XNNPACK on; also off with
``--no-xnnpack``), all settings interleaved in one loop with pydensecrf2. Cases:

- camvid: CamVid val image 0 (``--images N``: 0..N-1) with the unary from its ground truth by
  ``corrupted_unary`` (tools/crf_unaries.py, seed = image index, 12 labels as tools/bench_crf.py);
- noisy: a uniform-noise RGB image (seed = index) with the same unary; its bilateral lattice has
  about 27 times as many vertices as the CamVid image's.

pydensecrf's README parameters (Gaussian sxy 3 compat 3, bilateral sxy 80 srgb 13 compat 10)
unless ``--deeplab``. Lattice construction is included on both sides (pydensecrf: DenseCRF2D,
setUnaryEnergy, addPairwise*, inference; TFLite: one ``invoke`` on new inputs). Each side runs
``--repeats`` times, interleaved; the medians give the ratio TFLite / pydensecrf2 (wall time) and
the same ratio of process CPU time (less sensitive to other processes on a shared machine; with one
interpreter thread it is the work done). Agreement: labels of the TFLite output against
pydensecrf2's; parity: max |TFLite - TF| of the marginals.

    python tools/bench_crf_tflite.py [--repeats 7] [--iterations 10] [--threads 1 2] [--no-xnnpack]
    python tools/bench_crf_tflite.py --dynamic-size    # the spatial lattice built at run time too
    python tools/bench_crf_tflite.py --profile         # build vs iterations, per case
    python tools/bench_crf_tflite.py --passes          # the bilateral splat and slice alone, per iteration
    PYTHONPATH=/tmp/base python tools/bench_crf_tflite.py --repeats 1 --save /tmp/base.tflite
    python tools/bench_crf_tflite.py --compare /tmp/base.tflite   # another version, same run
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

# appended, so that a PYTHONPATH naming another tfseg checkout (to convert its version) comes first
sys.path.append(str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pydensecrf_reference import pydensecrf_marginals  # noqa: E402

README = dict(gaussian_sxy=3.0, gaussian_compat=3.0, bilateral_sxy=80.0, bilateral_srgb=13.0, bilateral_compat=10.0)
DEEPLAB = dict(gaussian_sxy=3.0, gaussian_compat=3.0, bilateral_sxy=20.0, bilateral_srgb=3.0, bilateral_compat=3.0)
LABELS = 12


def make_cases(count=1):
    """(name, image, unary) for the first ``count`` CamVid val images and as many noise images."""
    from crf_unaries import corrupted_unary

    from tfseg.data.camvid import load_split

    images, labels = load_split("val", limit=count)
    unaries = [corrupted_unary(label, LABELS, seed=i) for i, label in enumerate(labels)]
    suffix = (lambda i: f" {i}") if count > 1 else (lambda i: "")
    cases = [(f"camvid{suffix(i)}", image, unary) for i, (image, unary) in enumerate(zip(images, unaries))]
    for i, unary in enumerate(unaries):
        noisy = np.random.default_rng(i).integers(0, 256, images[0].shape, dtype=np.uint8)
        cases.append((f"noisy{suffix(i)}", noisy, unary))
    return cases


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

    return convert_signature(function, [tf.TensorSpec(shapes[0], tf.uint8), tf.TensorSpec(shapes[1], tf.float32)])


def convert_signature(function, specs):
    """TFLite flatbuffer (builtin ops only) of a tf.function with the input signature ``specs``."""
    import tensorflow as tf

    concrete = tf.function(function, input_signature=specs).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter.convert()


def make_interpreter(content, setting):
    """A LiteRT interpreter for ``setting``: "N threads" (XNNPACK, the default delegate, on) or
    "N threads, no XNNPACK"."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if "no XNNPACK" in setting
                else OpResolverType.AUTO)
    return Interpreter(model_content=content, num_threads=int(setting.split()[0]),
                       experimental_op_resolver_type=resolver)


def fixed_input_runner(content, setting, inputs):
    """A callable invoking a file on fixed ``inputs`` (numpy arrays, in the file's input order), warmed up."""
    interpreter = make_interpreter(content, setting)
    interpreter.allocate_tensors()
    for detail, value in zip(interpreter.get_input_details(), inputs):
        interpreter.set_tensor(detail["index"], value)
    output = interpreter.get_output_details()[0]["index"]
    interpreter.invoke()  # the first invoke also prepares the delegate

    def run():
        interpreter.invoke()
        return interpreter.get_tensor(output)
    return run


class TFLiteRunner:
    """One interpreter for a converted (image, unary) -> output file, inputs sized to ``shapes``.

    ``setting``: "N threads" (XNNPACK, the default delegate, on) or "N threads, no XNNPACK".
    """

    def __init__(self, content, setting, shapes):
        self.interpreter = make_interpreter(content, setting)
        self.inputs = self.interpreter.get_input_details()
        for detail in self.inputs:
            shape = shapes[0] if detail["dtype"] == np.uint8 else shapes[1]
            self.interpreter.resize_tensor_input(detail["index"], shape)
        self.interpreter.allocate_tensors()
        self.output = self.interpreter.get_output_details()[0]["index"]

    def __call__(self, image, unary):
        for detail in self.inputs:
            self.interpreter.set_tensor(detail["index"], image[None] if detail["dtype"] == np.uint8 else unary[None])
        self.interpreter.invoke()
        output = self.interpreter.get_tensor(self.output)
        return output[0] if output.ndim else output


def settings(args):
    """Interpreter settings to compare: each thread count, with XNNPACK and (--no-xnnpack) without."""
    return [f"{threads} threads" + suffix for threads in args.threads
            for suffix in ([""] + ([", no XNNPACK"] if args.no_xnnpack else []))]


def timed(run, wall, cpu):
    start, start_cpu = time.perf_counter(), time.process_time()
    result = run()
    wall.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
    return result


def crf_function(iterations, params, gaussian_filter):
    from tfseg.crf import dense_crf

    return lambda image, unary: dense_crf(image, unary, iterations=iterations, implementation="portable",
                                          gaussian_filter=gaussian_filter, **params)


def benchmark(args, params):
    import tensorflow as tf

    cases = make_cases(args.images)
    shapes = input_shapes(cases[0][2].shape)
    content = convert(crf_function(args.iterations, params, args.gaussian_filter), export_shapes(shapes, args))
    if args.save:
        Path(args.save).write_bytes(content)
    runners = {setting: TFLiteRunner(content, setting, shapes) for setting in settings(args)}
    for path in args.compare:  # other files of the same function (e.g. converted from another checkout)
        runners[f"{Path(path).name}, {settings(args)[0]}"] = TFLiteRunner(Path(path).read_bytes(), settings(args)[0],
                                                                         shapes)
    reference_tf = tf.function(crf_function(args.iterations, params, args.gaussian_filter))
    size = "dynamic-size" if args.dynamic_size else "fixed-size"
    print(f"TFLite ({size} file, builtins only, {len(content) / 1e6:.1f} MB), {args.iterations} iterations, "
          f"gaussian_filter={args.gaussian_filter}, params {params}; median of {args.repeats} interleaved runs; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'case':<9} {'interpreter':<32} {'tflite s':>9} {'pydensecrf s':>13} {'ratio':>6} {'cpu ratio':>10} "
          f"{'agree %':>8} {'|tflite - tf|':>14}")
    for name, image, unary in cases:
        reference = pydensecrf_marginals(image, unary, args.iterations, params)
        tf_marginals = reference_tf(tf.constant(image[None]), tf.constant(unary[None])).numpy()[0]
        outputs = {setting: runner(image, unary) for setting, runner in runners.items()}  # warm-up
        wall = {key: [] for key in list(runners) + ["pydensecrf"]}
        cpu = {key: [] for key in wall}
        for _ in range(args.repeats):
            for setting, runner in runners.items():
                timed(lambda: runner(image, unary), wall[setting], cpu[setting])
            timed(lambda: pydensecrf_marginals(image, unary, args.iterations, params), wall["pydensecrf"],
                  cpu["pydensecrf"])
        reference_s, reference_cpu = statistics.median(wall["pydensecrf"]), statistics.median(cpu["pydensecrf"])
        for setting, ours in outputs.items():
            ours_s = statistics.median(wall[setting])
            agreement = 100.0 * np.mean(ours.argmax(-1) == reference.argmax(-1))
            parity = np.abs(ours - tf_marginals).max()
            print(f"{name:<9} {setting:<32} {ours_s:>9.3f} {reference_s:>13.3f} {ours_s / reference_s:>6.2f} "
                  f"{statistics.median(cpu[setting]) / reference_cpu:>10.2f} {agreement:>8.3f} {parity:>14.1e}"
                  f"   (min {min(wall[setting]):.3f} / {min(wall['pydensecrf']):.3f})", flush=True)


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
    setting = settings(args)[0]
    runners = {"build (lattices, normalisations)": TFLiteRunner(convert(build_only, exported), setting, shapes)}
    for iterations in sorted({0, 1, args.iterations}):
        runners[f"dense_crf, {iterations} iterations"] = TFLiteRunner(
            convert(crf_function(iterations, params, args.gaussian_filter), exported), setting, shapes)
    for name, image, unary in cases:
        runs = dict(runners)
        for n in (0, args.iterations):
            runs[f"pydensecrf, {n} iterations"] = (
                lambda image, unary, n=n: pydensecrf_marginals(image, unary, n, params))
        times = {label: [] for label in runs}
        cpu = {label: [] for label in runs}
        for _ in range(args.repeats):
            for label, run in runs.items():
                timed(lambda: run(image, unary), times[label], cpu[label])
        print(f"{name} ({setting}): wall median (min), cpu median; load average {os.getloadavg()[0]:.1f}")
        for label in runs:
            print(f"  {label:<36} {statistics.median(times[label]):.3f} s ({min(times[label]):.3f}), "
                  f"cpu {statistics.median(cpu[label]):.3f} s", flush=True)


def pass_costs(args, params):
    """LiteRT time of the bilateral lattice's splat and slice alone, against pydensecrf2's whole iteration.

    The splat (MUL of the [entries, points, 1] weights by the [1, points, labels] marginals, then
    UNSORTED_SEGMENT_SUM) and the slice (GATHER of [entries, points] rows, MUL by the weights, SUM over
    the entries) of the portable path, each run 10 times in its own file on the CamVid image's real
    bilateral lattice (6 entries per point), and a bare MUL by a scalar of an [entries, points, labels]
    array (one pass over such an array). Printed per iteration beside pydensecrf2's time per iteration
    with both kernels, (t(10 iterations) - t(0 iterations)) / 10, measured in the same run.
    """
    import tensorflow as tf

    from tfseg.crf import PairwiseFilters

    name, image, unary = make_cases()[0]
    filters = PairwiseFilters(tf.constant(image[None]), [(params["bilateral_sxy"], params["bilateral_srgb"])],
                              "portable")
    rows = filters.entry_rows.numpy().astype(np.int32)
    splat_weights, slice_weights = filters.splat_weights.numpy(), filters.slice_weights.numpy()
    table_rows = int(filters.table_rows)
    marginals = tf.nn.softmax(-unary.reshape(-1, LABELS)).numpy()
    table = tf.math.unsorted_segment_sum(splat_weights[:, :, None] * marginals[None], rows, table_rows).numpy()
    entries = rows.shape[0]

    def splat(q, rows, weights):  # the factors keep the 10 copies apart
        return tf.add_n([tf.math.unsorted_segment_sum(
            tf.expand_dims(weights, -1) * tf.expand_dims(q * (1.0 + 1e-6 * i), 0), rows, table_rows)
            for i in range(10)])

    def slice_(table, rows, weights):
        return tf.add_n([tf.reduce_sum(tf.gather(table * (1.0 + 1e-6 * i), rows) * tf.expand_dims(weights, -1), axis=0)
                         for i in range(10)])

    def one_pass(values):  # keeps one element per product so the 10 MULs stay in the graph
        return tf.add_n([(values * (1.0 + 1e-6 * i))[0, 0] for i in range(10)])

    products = np.repeat(slice_weights[:, :, None], LABELS, axis=2)
    files = {
        f"bilateral splat ({entries} entries)": (splat, [marginals, rows, splat_weights]),
        f"bilateral slice ({entries} entries)": (slice_, [table, rows, slice_weights]),
        f"one pass over [{entries}, points, labels]": (one_pass, [products]),
    }
    setting = settings(args)[0]
    runners = {}
    for label, (function, inputs) in files.items():
        specs = [tf.TensorSpec(x.shape, tf.as_dtype(x.dtype)) for x in inputs]
        runners[label] = fixed_input_runner(convert_signature(function, specs), setting, inputs)
    for n in (0, 10):
        runners[f"pydensecrf, {n} iterations"] = lambda n=n: pydensecrf_marginals(image, unary, n, params)
    times = {label: [] for label in runners}
    for _ in range(args.repeats):
        for label, run in runners.items():
            timed(run, times[label], [])
    median = {label: statistics.median(t) for label, t in times.items()}
    per_iteration = (median["pydensecrf, 10 iterations"] - median["pydensecrf, 0 iterations"]) / 10
    print(f"{name} ({setting}), {table_rows - 1} bilateral vertices; per iteration, median of {args.repeats}; "
          f"load average {os.getloadavg()[0]:.1f}")
    for label in files:
        print(f"  {label:<36} {1e3 * median[label] / 10:6.1f} ms")
    print(f"  {'pydensecrf2, both kernels':<36} {1e3 * per_iteration:6.1f} ms")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--images", type=int, default=1,
                        help="CamVid val images (and as many noise images, seeds 0..N-1) to run")
    parser.add_argument("--threads", type=int, nargs="+", default=[2], help="interpreter thread counts to compare")
    parser.add_argument("--no-xnnpack", action="store_true",
                        help="also run each thread count without the XNNPACK delegate (builtin kernels only)")
    parser.add_argument("--gaussian-filter", default="auto", choices=["auto", "convolution", "grid", "lattice"])
    parser.add_argument("--deeplab", action="store_true",
                        help="the grid-searched CamVid parameters (bilateral sxy 20, srgb 3, compat 3)")
    parser.add_argument("--dynamic-size", action="store_true",
                        help="convert with dynamic height and width (the spatial lattice is then built at run "
                             "time; a fixed-size file carries it as constants)")
    parser.add_argument("--save", metavar="PATH", help="write the converted TFLite file there")
    parser.add_argument("--compare", metavar="PATH", nargs="+", default=[],
                        help="also time these TFLite files of the same function (e.g. --save'd from another "
                             "checkout with PYTHONPATH pointing at it), interleaved with the rest")
    parser.add_argument("--profile", action="store_true", help="build vs iterations instead of the benchmark")
    parser.add_argument("--passes", action="store_true",
                        help="instead, the bilateral splat and slice alone against pydensecrf2's iteration")
    args = parser.parse_args(argv)
    params = DEEPLAB if args.deeplab else README
    if args.passes:
        return pass_costs(args, params)
    if args.profile:
        return profile(args, params)
    return benchmark(args, params)


if __name__ == "__main__":
    main()
