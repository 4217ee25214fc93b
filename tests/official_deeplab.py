"""The official research/deeplab graph code as an oracle, run on TF 2 under ``tf.compat.v1``.

Run as a script in its own process (it swaps ``tensorflow`` for ``tensorflow.compat.v1`` in
``sys.modules``, which must not leak into the test process)::

    python tests/official_deeplab.py --code DIR --variant mobilenet_v2 --images IMAGES.npy --out OUT

``DIR`` holds the official ``deeplab/`` and ``slim/`` folders (``tensorflow/models`` ``research/``,
or a copy such as sumsuddin/DeepSegmentation); nothing is fetched. It needs ``tf-slim`` and
``tf-keras`` (``pip install tf-slim==1.1.0 tf-keras==2.21.0``), which tfseg never imports.

The script builds the official eval graph (``input_preprocess.preprocess_image_and_label`` with
``is_training=False``: pad bottom/right to the crop with the mean pixel; ``model.predict_labels``;
the labels cropped back to the image as ``vis.py`` does) for the configuration of a zoo card,
gives every variable random values (batch norm statistics calibrated on the images, layer by
layer), adds Momentum slots and a global step with a real ``MomentumOptimizer``, saves with
``tf.train.Saver`` into ``OUT/<folder>/model.ckpt``, packs that folder as an official-style
tarball ``OUT/model.tar.gz``, and writes the official labels and probabilities of each image of
``IMAGES.npy`` (uint8 ``[N, H, W, 3]``) to ``OUT/official_labels.npy`` and
``OUT/official_probabilities.npy``.
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import types
from pathlib import Path

import numpy as np

# (model_variant, atrous_rates, decoder_output_stride) of the zoo cards' official models (model_zoo.md).
VARIANTS = {
    "mobilenet_v2": ("mobilenet_v2", [], None),
    "xception_65": ("xception_65", [6, 12, 18], 4),
}
OUTPUT_STRIDE = 16
CROP = 513
TARBALL_FOLDER = "deeplabv3_pascal_train_aug"


def install_tf1_shim():
    """``import tensorflow`` gives ``tensorflow.compat.v1`` with ``contrib.slim`` = tf_slim; returns it."""
    import tensorflow.compat.v1 as tf1
    import tf_keras.src.legacy_tf_layers
    import tf_keras.src.legacy_tf_layers.normalization
    import tf_slim
    import tf_slim.nets

    tf1.disable_v2_behavior()
    # TF's tf.compat.v1.layers load "tf_keras.legacy_tf_layers", which tf-keras 2.21 keeps under src/.
    sys.modules["tf_keras.legacy_tf_layers"] = tf_keras.src.legacy_tf_layers
    sys.modules["tf_keras.legacy_tf_layers.normalization"] = tf_keras.src.legacy_tf_layers.normalization
    contrib = types.ModuleType("tensorflow.contrib")
    contrib.slim = tf_slim
    tf1.contrib = contrib
    sys.modules["tensorflow"] = tf1
    sys.modules["tensorflow.contrib"] = contrib
    sys.modules["tensorflow.contrib.slim"] = tf_slim
    sys.modules["tensorflow.contrib.slim.nets"] = tf_slim.nets
    return tf1


def random_value(name, shape, rng):
    """Random values with the scale of trained weights: positive BN variances, kernels by fan-in."""
    kind = name.rsplit("/", 1)[-1]
    if kind == "moving_variance":
        return rng.uniform(0.5, 2.0, shape)
    if kind == "gamma":
        return rng.uniform(0.5, 1.5, shape)
    if kind in ("beta", "moving_mean", "biases"):
        return rng.normal(0.0, 0.1, shape)
    fan_in = np.prod(shape[:2]) if kind == "depthwise_weights" else np.prod(shape[:-1])
    return rng.standard_normal(shape) / np.sqrt(fan_in)


def calibrate_batch_norm(tf, session, image, images, scope_ops):
    """Set every batch norm's moving statistics to its input's statistics on ``images``, layer by layer.

    With random weights and random statistics the activations of a deep network collapse to a
    near-constant label map; calibrated, the labels vary over the image as a trained model's do.
    """
    variables = {v.op.name: v for v in tf.global_variables()}
    for op in scope_ops:
        if not op.type.startswith("FusedBatchNorm"):
            continue
        mean_name, variance_name = (op.inputs[k].op.inputs[0].op.name for k in (3, 4))
        moments = tf.nn.moments(op.inputs[0], axes=[0, 1, 2])
        stats = [session.run(moments, {image: item}) for item in images]
        mean = np.mean([m for m, _ in stats], axis=0)
        variance = np.mean([v + (m - mean) ** 2 for m, v in stats], axis=0)
        variables[mean_name].load(mean, session)
        variables[variance_name].load(variance, session)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--code", required=True, help="folder holding the official deeplab/ and slim/")
    parser.add_argument("--variant", choices=sorted(VARIANTS), required=True)
    parser.add_argument("--num-classes", type=int, default=21)
    parser.add_argument("--images", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    code = Path(args.code).resolve()
    sys.path[:0] = [str(code), str(code / "slim")]
    tf = install_tf1_shim()
    from deeplab import common, input_preprocess, model  # the official code, imported through the shim

    variant, rates, decoder_stride = VARIANTS[args.variant]
    flags = ["official_deeplab", f"--model_variant={variant}"]
    if decoder_stride:
        flags.append(f"--decoder_output_stride={decoder_stride}")
    common.FLAGS(flags)

    images = np.load(args.images)
    image = tf.placeholder(tf.uint8, [None, None, 3])
    _, processed, _ = input_preprocess.preprocess_image_and_label(
        image, None, CROP, CROP, is_training=False, model_variant=variant)
    options = common.ModelOptions(outputs_to_num_classes={common.OUTPUT_TYPE: args.num_classes},
                                  crop_size=[CROP, CROP], atrous_rates=rates or None, output_stride=OUTPUT_STRIDE)
    labels = model.predict_labels(processed[None], options, image_pyramid=None)[common.OUTPUT_TYPE]
    eval_ops = tf.get_default_graph().get_operations()
    labels = labels[0, : tf.shape(image)[0], : tf.shape(image)[1]]
    # The probabilities behind those labels, computed as predict_labels does (for margins in the test).
    merged = model.multi_scale_logits(processed[None], options, image_pyramid=None)[common.OUTPUT_TYPE]
    full = tf.image.resize_bilinear(merged[model.MERGED_LOGITS_SCOPE], [CROP, CROP], align_corners=True)
    probabilities = tf.nn.softmax(full)[0, : tf.shape(image)[0], : tf.shape(image)[1]]

    # A training step's worth of optimizer state, as in a real training checkpoint.
    loss = tf.reduce_mean(merged[model.MERGED_LOGITS_SCOPE])
    train_op = tf.train.MomentumOptimizer(0.01, 0.9).minimize(loss, global_step=tf.train.get_or_create_global_step())
    del train_op  # built for its slots only

    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    folder = out / TARBALL_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    with tf.Session() as session:
        session.run(tf.global_variables_initializer())
        for variable in tf.global_variables():
            name = variable.op.name
            if name.endswith("/Momentum") or name == "global_step":
                continue
            shape = variable.shape.as_list()
            variable.load(np.asarray(random_value(name, shape, rng), variable.dtype.as_numpy_dtype), session)
        calibrate_batch_norm(tf, session, image, images, eval_ops)
        tf.train.Saver().save(session, str(folder / "model.ckpt"), write_meta_graph=False)
        official = [session.run([labels, probabilities], {image: item}) for item in images]
    np.save(out / "official_labels.npy", np.stack([lab for lab, _ in official]).astype(np.int32))
    np.save(out / "official_probabilities.npy", np.stack([p for _, p in official]).astype(np.float32))
    with tarfile.open(out / "model.tar.gz", "w:gz", compresslevel=1) as archive:
        archive.add(folder, arcname=TARBALL_FOLDER)
    names = sorted(v.op.name for v in tf.global_variables())
    print(f"{len(names)} variables saved, {sum(n.endswith('/Momentum') for n in names)} Momentum slots")


if __name__ == "__main__":
    main()
