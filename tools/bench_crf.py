"""Wall time of tfseg's dense CRF against pydensecrf2 on the same inputs.

Cases: a 360x480 CamVid val image with 12 labels and the same image resized to 375x500 with
21 labels (the Pascal VOC setting), unaries from ``corrupted_unary`` (tools/crf_unaries.py); 5 and 10
mean-field iterations; pydensecrf's README parameters (Gaussian sxy 3 compat 3, bilateral
sxy 80 srgb 13 compat 10) unless overridden. Lattice construction is included on both sides:
pydensecrf's timing covers DenseCRF2D construction, setUnaryEnergy, addPairwise* (which build
the lattices) and inference; tfseg's covers one call of a compiled ``dense_crf`` (lattices are
built inside every call). Tracing is excluded by a warm-up call. Each side is timed
``--repeats`` times, interleaved; the median is reported and the ratio is tfseg / pydensecrf2.

    python tools/bench_crf.py [--repeats 7] [--implementation fast] [--threads 0]
    python tools/bench_crf.py --agreement 3     # label agreement on CamVid val images, no timing
    python tools/bench_crf.py --breakdown       # where tfseg's time goes (360x480, 12 labels), and
                                                # each iteration stage against the 0.4x goal
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # crf_unaries, also when loaded by path

from pydensecrf_reference import pydensecrf_marginals  # noqa: E402


def make_cases():
    from crf_unaries import corrupted_unary
    from tfseg.data.camvid import load_split

    images, labels = load_split("val", limit=1)
    image, label = images[0], labels[0]
    cases = [("360x480, 12 labels", image, corrupted_unary(label, 12, seed=0))]
    big_image = cv2.resize(image, (500, 375), interpolation=cv2.INTER_LINEAR)
    big_label = cv2.resize(label, (500, 375), interpolation=cv2.INTER_NEAREST)
    cases.append(("375x500, 21 labels", big_image, corrupted_unary(big_label, 21, seed=1)))
    return cases


def agreement(count, implementation):
    """Per-image label agreement with pydensecrf2 on CamVid val images (corrupted-GT unaries)."""
    from crf_unaries import corrupted_unary
    from tfseg.crf import dense_crf
    from tfseg.data.camvid import IGNORE_LABEL, NUM_CLASSES, load_split

    images, labels = load_split("val", limit=count)
    unaries = np.stack([corrupted_unary(label, NUM_CLASSES, ignore_label=IGNORE_LABEL, seed=i)
                        for i, label in enumerate(labels)])
    readme = dict(gaussian_sxy=3.0, gaussian_compat=3.0, bilateral_sxy=80.0, bilateral_srgb=13.0,
                  bilateral_compat=10.0)
    settings = [
        ("both kernels, Gaussian on lattice", {}, readme, "lattice"),
        ("both kernels, Gaussian by convolution", {}, readme, "convolution"),
        ("Gaussian only, lattice", {"bilateral_compat": 0}, readme, "lattice"),
        ("Gaussian only, convolution", {"bilateral_compat": 0}, readme, "convolution"),
        ("bilateral only", {"gaussian_compat": 0}, readme, "lattice"),
    ]
    for name, override, base, gaussian_filter in settings:
        params = dict(base, **override)
        ours = dense_crf(images, unaries, iterations=10, implementation=implementation,
                         gaussian_filter=gaussian_filter, **params).numpy()
        ref_params = {k: (v if v != 0 else None) for k, v in params.items()}
        rates = []
        for image, unary, q in zip(images, unaries, ours):
            reference = pydensecrf_marginals(image, unary, 10, ref_params)
            rates.append(100.0 * np.mean(q.argmax(-1) == reference.argmax(-1)))
        print(f"{name:<40} agreement % per image: {', '.join(f'{r:.3f}' for r in rates)}", flush=True)


def breakdown(repeats, implementation):
    """Lattice build vs iterations (wall time) and the op types' share of TF's op time."""
    import collections

    import tensorflow as tf

    from tfseg.crf import PairwiseFilters, dense_crf

    name, image, unary = make_cases()[0]
    params = dict(gaussian_sxy=3.0, gaussian_compat=3.0, bilateral_sxy=80.0, bilateral_srgb=13.0,
                  bilateral_compat=10.0)

    def build_only(im):
        filters = PairwiseFilters(im[None], [(3.0, None), (80.0, 13.0)], implementation)
        blur = [index for pair in filters.blur_indices for index in pair]
        if implementation == "fast":
            return [m.values for m in filters.splat_matrices + filters.slice_matrices] + blur
        return [filters.splat_weights, filters.slice_weights, filters.entry_rows] + blur

    runs = {"lattice build (both kernels, with normalisation)": (tf.function(build_only), (image,))}
    for iterations in (0, 5, 10):
        runs[f"dense_crf, {iterations} iterations"] = (
            tf.function(lambda im, un, n=iterations: dense_crf(im, un, iterations=n, implementation=implementation,
                                                               **params)), (image, unary))
    print(f"{name}, implementation={implementation}: median of {repeats} (min)")
    for label, (function, args) in runs.items():
        args = [tf.constant(a) for a in args]
        tf.nest.map_structure(lambda t: t.numpy(), function(*args))
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), function(*args))
            times.append(time.perf_counter() - start)
        print(f"  {label:<50} {statistics.median(times):.3f} s ({min(times):.3f})")

    # op types' share of the summed op time (both cores), 10 iterations, from TF's step stats
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        image_in = tf1.placeholder(tf.uint8, image.shape)
        unary_in = tf1.placeholder(tf.float32, unary.shape)
        output = dense_crf(image_in, unary_in, iterations=10, implementation=implementation, **params)
        with tf1.Session(graph=graph) as session:
            feed = {image_in: image, unary_in: unary}
            session.run(output, feed)
            totals = collections.Counter()
            for _ in range(3):
                metadata = tf1.RunMetadata()
                session.run(output, feed, options=tf1.RunOptions(trace_level=tf1.RunOptions.FULL_TRACE),
                            run_metadata=metadata)
                for device in metadata.step_stats.dev_stats:
                    for node in device.node_stats:
                        op_type = node.timeline_label.split("=")[-1].split("(")[0].strip() or node.node_name
                        totals[op_type] += node.op_end_rel_micros / 3e3
    total = sum(totals.values())
    print(f"  op time summed over threads, 10 iterations: {total:.0f} ms; by op type:")
    for op_type, ms in totals.most_common(10):
        print(f"    {op_type:<32} {ms:7.1f} ms  {100 * ms / total:5.1f} %")
    if implementation == "fast":
        stage_budget(image, unary, params, repeats, runs["lattice build (both kernels, with normalisation)"])


def stage_budget(image, unary, params, repeats, build, goal=0.4):
    """Each stage of one fast-path mean-field iteration timed alone on the image's own lattices.

    The stages are what every iteration runs (splat, then blur and slice, then the unary add and
    softmax). Printed beside them: the time per iteration that a ratio of ``goal`` to pydensecrf2
    (timed in the same run) leaves after the lattice build, and the ratio that the build plus 10
    times the stages' sum gives.
    """
    import tensorflow as tf

    from tfseg.crf import PairwiseFilters

    filters = PairwiseFilters(tf.constant(image[None]), [(3.0, None), (80.0, 13.0)], "fast")
    transforms = [params["gaussian_compat"], params["bilateral_compat"]]
    negative_unary = [-u for u in filters.split_points(tf.constant(unary[None]))]
    q = [tf.nn.softmax(u, axis=-1) for u in negative_unary]
    messages = filters.sharded_messages(q, transforms)
    stages = {
        "splat (sparse matmul, both kernels)": (
            lambda q: tf.add_n([tf.sparse.sparse_dense_matmul(m, p, adjoint_a=True)
                                for m, p in zip(filters.splat_matrices, q)]), (q,)),
        "splat + blur + slice (messages)": (lambda q: filters.sharded_messages(q, transforms), (q,)),
        "unary add + softmax": (lambda u, m: [tf.nn.softmax(a + b, axis=-1) for a, b in zip(u, m)],
                                (negative_unary, messages)),
    }
    medians = {}
    for label, (function, args) in stages.items():
        function = tf.function(function)
        tf.nest.map_structure(lambda t: t.numpy(), function(*args))
        times = []
        for _ in range(max(repeats, 5) * 3):
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), function(*args))
            times.append(time.perf_counter() - start)
        medians[label] = statistics.median(times)
        print(f"  stage: {label:<42} {1e3 * medians[label]:7.2f} ms per iteration")
    function, args = build
    args = [tf.constant(a) for a in args]
    build_times, reference_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), function(*args))
        build_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        pydensecrf_marginals(image, unary, 10, params)
        reference_times.append(time.perf_counter() - start)
    build_s, reference_s = statistics.median(build_times), statistics.median(reference_times)
    per_iteration = medians["splat + blur + slice (messages)"] + medians["unary add + softmax"]
    total = build_s + 10 * per_iteration
    budget = (goal * reference_s - build_s) / 10
    print(f"  pydensecrf2, 10 iterations, this run: {reference_s:.3f} s. A ratio of {goal} leaves "
          f"{1e3 * budget:.1f} ms per iteration after the build ({build_s:.3f} s); the stages take "
          f"{1e3 * per_iteration:.1f} ms. Build + 10 x stages = {total:.3f} s: ratio {total / reference_s:.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--iterations", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--implementation", default="fast", choices=["fast", "portable"])
    parser.add_argument("--gaussian-filter", default="auto", choices=["auto", "convolution", "lattice"])
    parser.add_argument("--threads", type=int, default=0, help="TF intra/inter-op threads (0: TF default)")
    parser.add_argument("--agreement", type=int, default=0, metavar="N",
                        help="instead of timing, print label agreement on the first N CamVid val images")
    parser.add_argument("--breakdown", action="store_true", help="instead, show where tfseg's time goes")
    args = parser.parse_args(argv)
    if args.agreement:
        return agreement(args.agreement, args.implementation)
    if args.breakdown:
        return breakdown(args.repeats, args.implementation)

    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from tfseg.crf import dense_crf

    params = dict(gaussian_sxy=3.0, gaussian_compat=3.0, bilateral_sxy=80.0, bilateral_srgb=13.0,
                  bilateral_compat=10.0)
    print(f"tfseg implementation={args.implementation} gaussian_filter={args.gaussian_filter} "
          f"threads={args.threads or 'default'} repeats={args.repeats}; params {params}")
    print(f"{'case':<20} {'iters':>5} {'tfseg s':>9} {'pydensecrf s':>13} {'ratio':>6} {'agree %':>8}")
    for name, image, unary in make_cases():
        for iterations in args.iterations:
            compiled = tf.function(lambda im, un, it=iterations: dense_crf(
                im, un, iterations=it, implementation=args.implementation,
                gaussian_filter=args.gaussian_filter, **params))
            image_t, unary_t = tf.constant(image), tf.constant(unary)
            ours = compiled(image_t, unary_t).numpy()  # warm-up: tracing excluded
            reference = pydensecrf_marginals(image, unary, iterations, params)
            ours_times, ref_times = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                compiled(image_t, unary_t).numpy()
                ours_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                pydensecrf_marginals(image, unary, iterations, params)
                ref_times.append(time.perf_counter() - start)
            ours_s, ref_s = statistics.median(ours_times), statistics.median(ref_times)
            agree = 100.0 * np.mean(ours.argmax(-1) == reference.argmax(-1))
            print(f"{name:<20} {iterations:>5} {ours_s:>9.3f} {ref_s:>13.3f} {ours_s / ref_s:>6.2f} {agree:>8.3f}"
                  f"   (tfseg min {min(ours_times):.3f}, pydensecrf min {min(ref_times):.3f})", flush=True)


if __name__ == "__main__":
    main()
