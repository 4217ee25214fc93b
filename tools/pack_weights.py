"""Pack a trained ``.keras`` model as a small preset folder: ``config.json`` + fp16 ``model.weights.h5``.

keras-hub's preset layout: ``config.json`` says how to rebuild the model (``tfseg.build_model``
name, class count and options), ``model.weights.h5`` holds the weights stored as float16 (half
the size; Keras casts them back to the variables' float32 when loading), ``metadata.json`` the
parameter count, the sha256 of the weight file and whatever the caller adds (training command,
figures). The fp16 copy is checked against the original: its labels on the given images must agree.

    python tools/pack_weights.py RUN/model.keras zoo/NAME --builder deeplab_v3plus \\
        --options '{"backbone": "mobilenet_v2"}' --metadata extra.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--builder", required=True)
    parser.add_argument("--options", default="{}")
    parser.add_argument("--metadata", help="JSON file merged into metadata.json")
    args = parser.parse_args(argv)

    import keras

    import tfseg

    trained = keras.saving.load_model(args.model, compile=False)
    num_classes = int(trained.output_shape[-1])
    options = json.loads(args.options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rebuilt = tfseg.build_model(args.builder, num_classes, **options)
    trained_weights = trained.get_weights()
    shapes = [w.shape for w in trained_weights]
    if shapes != [tuple(w.shape) for w in rebuilt.weights]:
        raise SystemExit(f"{args.model} does not have the weights of {args.builder} with {options}")
    rebuilt.set_weights(trained_weights)  # same builder: same weight order (checked on images below)
    weights = out / "model.weights.h5"
    full = out / "fp32.weights.h5"
    rebuilt.save_weights(full)
    to_float16(full, weights)
    full.unlink()

    check = tfseg.build_model(args.builder, num_classes, **options)
    check.load_weights(weights)
    from tfseg.data import open_dataset
    from tfseg.data.pipeline import ExampleSource

    source = ExampleSource(open_dataset("camvid"), "val", limit=8)
    images = np.stack([source[i][0] for i in range(len(source))]).astype("float32")
    a = trained.predict(images, verbose=0).argmax(-1)
    b = check.predict(images, verbose=0).argmax(-1)
    agreement = float((a == b).mean())
    config = {"builder": args.builder, "num_classes": num_classes, "options": options}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    metadata = json.loads(Path(args.metadata).read_text()) if args.metadata else {}
    metadata.update({
        "keras_version": keras.__version__, "parameter_count": int(check.count_params()),
        "weights_sha256": sha256(weights), "weights_dtype": "float16",
        "fp16_label_agreement_on_8_camvid_val_images": agreement,
    })
    (out / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    print(f"{weights}: {weights.stat().st_size / 1e6:.2f} MB, fp16 vs fp32 label agreement {100 * agreement:.3f}%")


if __name__ == "__main__":
    main()
