"""`.keras` files load in a fresh Python process after `import tfseg` alone, with identical outputs.

Each check builds and saves models here, then loads them in a new interpreter (``subprocess``) that
imports nothing of tfseg but the package itself, so a custom object registered only by a submodule
(the FCN upsampling initializer, say) would fail to load there.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import tfseg
from tfseg.registry import MODEL_VARIANTS, encoder_output_stride

PACKAGE_ROOT = Path(tfseg.__file__).resolve().parent

# Runs in the fresh process: `import tfseg`, then load each case of the manifest and write what it gives.
LOADER = r"""
import json, sys
import numpy as np
import keras
import tfseg

loaded_submodules = sorted(m for m in sys.modules if m.startswith("tfseg.models"))
assert not loaded_submodules, f"import tfseg alone imported {loaded_submodules}"
report = {"registered": {}, "cases": {}}
for name in json.loads(sys.argv[2]):
    report["registered"][name] = keras.saving.get_registered_object(name) is not None
report["attributes"] = [hasattr(tfseg, "metrics"), hasattr(tfseg, "losses")]
for case in json.load(open(sys.argv[1])):
    result = {}
    if case["kind"] == "keras":
        model = keras.saving.load_model(case["path"])
        image = np.load(case["input"])
        np.save(case["output"], model.predict(image, verbose=0))
        result["encoder_output_stride"] = tfseg.registry.encoder_output_stride(model)
        result["feature_info"] = [
            [list(map(str, (info.name, info.stride, info.channels))) for info in getattr(layer, "feature_info", ())]
            for layer in model.layers if hasattr(layer, "feature_info")
        ]
        if case.get("labels"):
            values = model.evaluate(image, np.load(case["labels"]), verbose=0, return_dict=True)
            result["evaluate"] = {k: float(v) for k, v in values.items()}
            result["loss_class"] = type(model.loss).__name__
    else:  # a model config only: rebuilt from its serialised form, initializers included
        model = keras.saving.deserialize_keras_object(json.load(open(case["path"])))
        result["layers"] = [[layer.name, type(layer).__name__] for layer in model.layers]
        result["params"] = model.count_params()
        result["kernels"] = {}
        for name in case["kernels"]:
            np.save(case["output"] + name + ".npy", keras.ops.convert_to_numpy(model.get_layer(name).kernel))
    report["cases"][case["name"]] = result
print("REPORT " + json.dumps(report))
"""


def registered_names():
    """``package>Class`` of every class the tfseg sources register, read from the source text."""
    names = []
    for path in PACKAGE_ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any("register_keras_serializable" in ast.unparse(d)
                                                      for d in node.decorator_list):
                names.append(f"tfseg>{node.name}")
    return sorted(names)


def run_fresh_process(manifest, tmp_path, timeout=900):
    manifest_path = tmp_path / "manifest.json"
    manifest_path.write_text(json.dumps(manifest))
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT.parent), TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-c", LOADER, str(manifest_path), json.dumps(registered_names())],
        capture_output=True, text=True, timeout=timeout, cwd=tmp_path, env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    line = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")][-1]
    return json.loads(line[len("REPORT "):])


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def randomize_state(model, seed=0):
    """Random BN statistics and non-zero score layers, so that a load that lost any state shows."""
    rng = np.random.default_rng(seed)
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                               rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, variance.shape)])
        elif layer.weights and all(not np.any(w) for w in layer.get_weights()):
            layer.set_weights([rng.normal(0, 0.01, w.shape).astype(w.dtype) for w in layer.get_weights()])


def feature_info_rows(model):
    return [
        [list(map(str, (info.name, info.stride, info.channels))) for info in layer.feature_info]
        for layer in model.layers if hasattr(layer, "feature_info")
    ]


def save_case(model, name, tmp_path, image, labels=None):
    path, inputs, output = (tmp_path / f"{name}{suffix}" for suffix in (".keras", "_in.npy", "_out.npy"))
    model.save(path)
    np.save(inputs, image)
    case = {"kind": "keras", "name": name, "path": str(path), "input": str(inputs), "output": str(output)}
    if labels is not None:
        np.save(tmp_path / f"{name}_labels.npy", labels)
        case["labels"] = str(tmp_path / f"{name}_labels.npy")
    return case


def test_sources_register_the_expected_objects():
    """The list the fresh process checks is read from the sources; make sure it is not empty or partial."""
    names = registered_names()
    for expected in ("tfseg>BilinearUpsampling", "tfseg>CropLike", "tfseg>ResizeLike", "tfseg>ImagePreprocessing",
                     "tfseg>Backbone", "tfseg>ConfusionMatrixMetrics", "tfseg>SparseCrossEntropyWithIgnore"):
        assert expected in names


# Cheap configurations covering every model family, every backbone family and every custom object.
# FCN's VGG16 with its 7x7x512x4096 fc6 has no narrow option (a .keras file of 537 MB): here its
# config is rebuilt in the fresh process (where its initializer failed to deserialise), and its
# outputs are compared in the slow test below.
CHEAP_CASES = [
    ("unet", {"mode": "practical", "base_filters": 4}),
    ("unet", {"mode": "paper", "base_filters": 4}),
    ("deeplab_v1", {}),
    ("deeplab_v2", {"backbone": "resnet50", "aspp": "S"}),
    ("deeplab_v3", {"backbone": "xception41", "multi_grid": (1, 2, 4)}),
    ("deeplab_v3plus", {"backbone": "mobilenet_v2", "decoder": True}),
]


def test_every_family_loads_in_a_fresh_process_with_identical_outputs(tmp_path):
    rng = np.random.default_rng(0)
    manifest, expected = [], {}
    for index, (name, options) in enumerate(CHEAP_CASES):
        model = tfseg.build_model(name, 3, **options)
        randomize_state(model, seed=index)
        size = (188, 188) if options.get("mode") == "paper" else (37, 51)
        image = rng.uniform(0, 255, (1, *size, 3)).astype("float32")
        key = f"{index}_{name}"
        labels = None
        if name == "unet" and options["mode"] == "practical":  # compiled with tfseg's loss and metric
            model.compile(
                optimizer="sgd",
                loss=tfseg.losses.SparseCrossEntropyWithIgnore(ignore_label=255),
                metrics=[tfseg.metrics.ConfusionMatrixMetrics(3, ignore_label=255)],
            )
            labels = rng.integers(0, 3, (1, *size)).astype("int32")
            labels[0, :5] = 255
            expected[key + "_evaluate"] = model.evaluate(image, labels, verbose=0, return_dict=True)
        manifest.append(save_case(model, key, tmp_path, image, labels))
        expected[key] = (model.predict(image, verbose=0), encoder_output_stride(model), feature_info_rows(model))
        del model
        keras.backend.clear_session()

    fcn = tfseg.build_model("fcn8s", 2, at_once=True)
    config_path = tmp_path / "fcn8s_config.json"
    config_path.write_text(json.dumps(keras.saving.serialize_keras_object(fcn)))
    upsampling = ["upscore2", "upscore_pool4", "upscore8"]
    manifest.append({"kind": "config", "name": "fcn8s", "path": str(config_path), "kernels": upsampling,
                     "output": str(tmp_path / "fcn8s_")})
    fcn_layers = [[layer.name, type(layer).__name__] for layer in fcn.layers]
    fcn_params = fcn.count_params()
    fcn_kernels = {name: keras.ops.convert_to_numpy(fcn.get_layer(name).kernel) for name in upsampling}
    del fcn
    keras.backend.clear_session()

    report = run_fresh_process(manifest, tmp_path)
    assert report["attributes"] == [True, True]
    assert report["registered"] and all(report["registered"].values()), report["registered"]
    for case in manifest[:-1]:
        logits, stride, feature_info = expected[case["name"]]
        got = report["cases"][case["name"]]
        np.testing.assert_array_equal(np.load(case["output"]), logits, err_msg=case["name"])
        assert np.abs(logits).max() > 0
        assert got["encoder_output_stride"] == stride and got["feature_info"] == feature_info, case["name"]
        if "labels" in case:
            assert got["loss_class"] == "SparseCrossEntropyWithIgnore"
            want = expected[case["name"] + "_evaluate"]
            assert set(got["evaluate"]) == set(want) and "mean_iou" in want
            for metric, value in want.items():
                assert got["evaluate"][metric] == pytest.approx(float(value), rel=1e-6, abs=1e-7), metric
    strides = {case["name"]: expected[case["name"]][1] for case in manifest[:-1]}
    assert strides["2_deeplab_v1"] == 8 and strides["5_deeplab_v3plus"] == 16

    got = report["cases"]["fcn8s"]
    assert got["layers"] == fcn_layers and got["params"] == fcn_params
    for name in upsampling:  # bilinear initializer, rebuilt from "tfseg>BilinearUpsampling"
        np.testing.assert_array_equal(np.load(tmp_path / f"fcn8s_{name}.npy"), fcn_kernels[name])


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,options", MODEL_VARIANTS, ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in MODEL_VARIANTS]
)
def test_every_listed_configuration_loads_in_a_fresh_process(tmp_path, name, options):
    """Every row of `tfseg models`, full size, 21 classes (about 4.5 CPU-minutes in all; 21 minutes wall
    on the shared 2-core machine)."""
    model = tfseg.build_model(name, 21, **options)
    randomize_state(model)
    size = (188, 188) if options.get("mode") == "paper" else (37, 51)
    image = np.random.default_rng(1).uniform(0, 255, (1, *size, 3)).astype("float32")
    case = save_case(model, name, tmp_path, image)
    logits, stride, feature_info = model.predict(image, verbose=0), encoder_output_stride(model), feature_info_rows(model)
    del model
    keras.backend.clear_session()
    got = run_fresh_process([case], tmp_path)["cases"][name]
    np.testing.assert_array_equal(np.load(case["output"]), logits)
    assert np.abs(logits).max() > 0
    assert got["encoder_output_stride"] == stride and got["feature_info"] == feature_info
