"""Pack a trained ``.keras`` model into its zoo card's folder: fp16 ``model.weights.h5`` + the card's weights entry.

The card (``card.yaml`` in the card's folder) names the ``tfseg.build_model`` builder, class count and
options; the weights are stored as float16 (half the size; Keras casts them back to the
variables' float32 when loading) and checked against the original: the labels of both on
8 CamVid val images must agree, and the agreement is written to the card with the file's sha256
and the parameter count.

    python tools/pack_weights.py RUN/model.keras zoo/NAME [--trained-scale 0.5]

``--trained-scale 0.5``: the run trained the model on images at half size (its scores were taken at
``eval_scales: [0.5]``) and the card's model takes full-size images (U-Net ``input_stride: 2``, the
same weights): the check feeds the trained model half-size images and upsamples its logits, and the
card's ``training.image_scale`` records it (``--pretrained`` fine-tuning rescales the recipe's scale range).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import h5py
import numpy as np


def to_float16(source, target):
    """Copy an HDF5 weight file with every float32 dataset stored as float16 (attributes kept)."""
    with h5py.File(source, "r") as src, h5py.File(target, "w") as dst:
        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                group = dst.require_group(name)
                group.attrs.update(obj.attrs)
            else:
                data = obj[()]
                dst.create_dataset(name, data=data.astype(np.float16) if data.dtype == np.float32 else data)
                dst[name].attrs.update(obj.attrs)

        dst.attrs.update(src.attrs)
        src.visititems(copy)


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _logits_at_scale(model, images, scale):
    """``model``'s logits for ``images`` resized by ``scale``, resized back to the images' size."""
    import tensorflow as tf

    if scale == 1.0:
        return model.predict(images, verbose=0)
    size = images.shape[1:3]
    scaled = tf.image.resize(images, [round(size[0] * scale), round(size[1] * scale)], "bilinear")
    return tf.image.resize(model.predict(scaled, verbose=0), size, "bilinear").numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the trained .keras file")
    parser.add_argument("card_folder", help="zoo/NAME, holding card.yaml")
    parser.add_argument("--trained-scale", type=float, default=1.0,
                        help="the image scale the run trained and scored the model at (0.5 for a half-size run)")
    args = parser.parse_args(argv)

    import keras
    import yaml

    import tfseg
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource
    from tfseg.zoo.cards import write_card

    out = Path(args.card_folder)
    card_path = out / "card.yaml"
    card = yaml.safe_load(card_path.read_text())
    trained = keras.saving.load_model(args.model, compile=False)
    num_classes = int(trained.output_shape[-1])
    if num_classes != card["num_classes"]:
        raise SystemExit(f"{args.model} has {num_classes} classes, {card_path} says {card['num_classes']}")
    rebuilt = tfseg.build_model(card["builder"], num_classes, **(card["options"] or {}))
    trained_weights = trained.get_weights()
    if [w.shape for w in trained_weights] != [tuple(w.shape) for w in rebuilt.weights]:
        raise SystemExit(f"{args.model} does not have the weights of {card['builder']} with {card['options']}")
    rebuilt.set_weights(trained_weights)  # same builder: same weight order (checked on images below)
    weights = out / "model.weights.h5"
    full = out / "fp32.weights.h5"
    rebuilt.save_weights(full)
    to_float16(full, weights)
    full.unlink()

    check = tfseg.build_model(card["builder"], num_classes, **(card["options"] or {}))
    check.load_weights(weights)
    source = ExampleSource(open_dataset("camvid"), "val", limit=8)
    images = np.stack([source[i][0] for i in range(len(source))]).astype("float32")
    a = _logits_at_scale(trained, images, args.trained_scale).argmax(-1)
    b = check.predict(images, verbose=0).argmax(-1)
    agreement = float((a == b).mean())
    card["parameters"] = int(check.count_params())
    card["weights"] = {**(card.get("weights") or {}), "format": "keras_weights_h5", "file": weights.name,
                       "sha256": sha256(weights), "dtype": "float16"}
    if args.trained_scale != 1.0:
        card.setdefault("training", {})["image_scale"] = args.trained_scale  # read by fine_tuning_defaults
    card.setdefault("training", {})["fp16_label_agreement"] = (
        f"{100 * agreement:.2f}% of pixels on 8 CamVid val images (fp16 storage vs the fp32 weights)")
    write_card(card, card_path)
    print(f"{weights}: {weights.stat().st_size / 1e6:.2f} MB, fp16 vs fp32 label agreement {100 * agreement:.3f}%")


if __name__ == "__main__":
    main()
