"""``tfseg bench MODEL``: latency per format, multiply-adds and achieved GFLOP/s against the matmul rate."""

from __future__ import annotations

from tfseg.commands.arguments import key_value, reports_errors, size

DEFAULT_FORMATS = "keras,saved_model,tflite,int8"


def _set_threads(threads):
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _model(args, input_size):
    from pathlib import Path

    import tfseg
    from tfseg.inference.models import as_keras_model

    if Path(args.model).suffix == ".keras" or Path(args.model).exists():
        return as_keras_model(args.model), args.model
    options = dict(args.option or ())
    model = tfseg.build_model(args.model, args.num_classes, (*input_size, 3), **options)
    described = ", ".join(f"{k}={v}" for k, v in options.items())
    return model, f"{args.model}" + (f" ({described})" if described else "")


def _print_formats(args):
    from tfseg.bench import benchmark_formats, count_macs
    from tfseg.bench.cpu import cpu_description

    input_size = args.size
    model, name = _model(args, input_size)
    macs = count_macs(model, input_size)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    rows, rate = benchmark_formats(model, input_size, formats, threads=args.threads, repeats=args.repeats, macs=macs)
    print(f"{name} at {input_size[0]}x{input_size[1]}, batch 1: {model.count_params():,} parameters, "
          f"{macs / 1e9:.2f} GMAC")
    print(f"fp32 matmul 2048x2048x2048 in TensorFlow: {rate:.1f} GFLOP/s (timed in turn with the formats, "
          f"median of {args.repeats})")
    print(f"CPU: {cpu_description()}")
    print("| format | latency (ms) | images/s | GFLOP/s | of matmul rate |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['format']} | {row['latency_ms']:.2f} | {row['images_per_s']:.2f} | {row['gflops']:.1f} | "
              f"{row['fraction_of_matmul'] * 100:.0f}% |")
    if "int8" in formats:
        print("(int8 is calibrated on synthetic images: its latency is meaningful, its labels are not)")


def _print_peer(args):
    from tfseg.bench import count_macs
    from tfseg.bench.cpu import cpu_description
    from tfseg.bench.peer import PEER_CLASSES, PEER_SIZE, keras_hub_deeplab_v3plus, peer_seconds, tfseg_deeplab_v3plus

    models = {"tfseg deeplab_v3plus resnet50 (output stride 16)": tfseg_deeplab_v3plus(),
              "keras-hub DeepLabV3Plus resnet50": keras_hub_deeplab_v3plus()}
    seconds = peer_seconds(list(models.values()), PEER_SIZE, repeats=args.repeats, xla=args.xla)
    rows = [(label, model.count_params(), count_macs(model, PEER_SIZE), s)
            for (label, model), s in zip(models.items(), seconds)]
    mode = "XLA-compiled tf.function" if args.xla else "tf.function"
    print(f"peer: {PEER_SIZE[0]}x{PEER_SIZE[1]}, batch 1, {PEER_CLASSES} classes, random weights, {mode}, "
          f"float input, logits out; median of {args.repeats} runs each, timed in turn")
    print(f"CPU: {cpu_description()}")
    print("| model | parameters | GMAC | latency (ms) |")
    print("|---|---|---|---|")
    for label, params, macs, seconds in rows:
        print(f"| {label} | {params:,} | {macs / 1e9:.1f} | {seconds * 1e3:.0f} |")
    print(f"latency ratio tfseg / keras-hub: {rows[0][3] / rows[1][3]:.2f} "
          f"(multiply-adds {rows[0][2] / 1e9:.1f} vs {rows[1][2] / 1e9:.1f} GMAC)")


@reports_errors
def run(args):
    if not args.model and not args.peer:
        raise ValueError("give a MODEL (an architecture from `tfseg models` or a .keras file), or --peer")
    from tfseg.bench.formats import FORMATS

    unknown = sorted(set(f.strip() for f in args.formats.split(",") if f.strip()) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown format(s) {unknown}; valid: {list(FORMATS)}")
    _set_threads(args.threads)
    if args.model:
        _print_formats(args)
    if args.peer:
        _print_peer(args)
    return 0


def register(subparsers):
    from tfseg.bench.formats import FORMATS

    parser = subparsers.add_parser(
        "bench", help="latency per format, multiply-adds, GFLOP/s against the machine's matmul rate",
        description="Time MODEL in each format on one image of --size, count its multiply-adds and compare "
                    "the achieved GFLOP/s with the fp32 matmul rate measured in the same run.")
    parser.add_argument("model", nargs="?", help="an architecture name from `tfseg models` (random weights) or a .keras file")
    parser.add_argument("--size", type=size, default=(513, 513), help="input HxW (default 513x513)")
    parser.add_argument("--threads", type=int, default=None, help="TensorFlow and TFLite threads (default: all cores)")
    parser.add_argument("--formats", default=DEFAULT_FORMATS, help=f"comma-separated, from {', '.join(FORMATS)}")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per format (median reported)")
    parser.add_argument("--num-classes", type=int, default=21)
    parser.add_argument("-o", "--option", type=key_value, action="append",
                        help="architecture option KEY=VALUE, e.g. -o backbone=mobilenet_v2 (repeatable)")
    parser.add_argument("--peer", action="store_true",
                        help="also time keras-hub's DeepLabV3Plus ResNet-50 beside tfseg's at 512x512 (needs keras-hub)")
    parser.add_argument("--xla", action="store_true", help="with --peer: time both XLA-compiled")
    parser.set_defaults(func=run)
