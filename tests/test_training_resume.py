"""Training you can trust: exact resume in every mode, refused config changes, replica-independent
loss, weight decay by layer type, one-line CLI errors."""

from __future__ import annotations

import json
import re
import subprocess

import keras
import numpy as np
import pytest

import tfseg  # noqa: F401  (registers its layers for loading saved models)

from training_helpers import (
    REPO, assert_same_weights, run_log, run_training, start_training, subprocess_env, tiny_config,
    train_command, wait_for_checkpoint_then_kill, write_config,
)

# Each mode trains 24 steps of 4 images (4 steps per epoch) with a checkpoint every 3 steps, so
# the kill falls after a mid-epoch checkpoint.
KILL_MODES = [
    pytest.param({"model_options": {"base_filters": 4, "depth": 2, "dropout": 0.5}}, id="unet_dropout_0.5"),
    pytest.param({"model": "deeplab_v3plus", "model_options": {"backbone": "mobilenet_v2"}},
                 id="deeplab_default_dropout", marks=pytest.mark.slow),  # MobileNetV2: 50 s
    # A start far above the loss scale fp16 can hold: the first steps overflow and are skipped
    # (their batches consumed, the optimizer's step counter not moved).
    pytest.param({"model_options": {"base_filters": 4, "depth": 2, "dropout": 0.5},
                  "mixed_precision": "mixed_float16", "initial_loss_scale": 2.0**40}, id="mixed_float16_skipped_steps"),
]


@pytest.mark.parametrize("mode", KILL_MODES)
def test_killed_run_resumes_to_the_uninterrupted_weights_in_every_mode(synthetic_root, tmp_path, mode, capsys):
    """SIGKILLed in a process of its own; the uninterrupted and the resumed runs in this one."""
    from tfseg.training.train import train

    options = {"steps": 24, "checkpoint_every": 3, **mode}
    train(None, **tiny_config(synthetic_root, tmp_path / "straight", **options))
    killed = write_config(tmp_path / "killed.json", tiny_config(synthetic_root, tmp_path / "killed", **options))
    wait_for_checkpoint_then_kill([start_training(killed)], tmp_path / "killed")
    assert not (tmp_path / "killed" / "model.keras").exists()

    capsys.readouterr()
    train(None, **tiny_config(synthetic_root, tmp_path / "killed", **options))
    resumed_at = int(re.search(r"resuming from \S+ at step (\d+) of 24", capsys.readouterr().out).group(1))
    assert 0 < resumed_at < 24 and run_log(tmp_path / "killed")[-1]["from_step"] == resumed_at
    assert_same_weights(tmp_path / "straight" / "model.keras", tmp_path / "killed" / "model.keras")
    if mode.get("mixed_precision") == "mixed_float16":
        record = run_log(tmp_path / "straight")[-1]
        assert record["to_step"] == 24 and record["optimizer_steps"] < 24, record


class _Interrupt(Exception):
    pass


class _InterruptAfter(keras.callbacks.Callback):
    def __init__(self, out_dir, checkpoints):
        super().__init__()
        self.index = out_dir / "checkpoints" / "checkpoint"
        self.checkpoints = checkpoints

    def on_train_batch_end(self, batch, logs=None):
        if self.index.is_file() and self.index.read_text().count("all_model_checkpoint_paths") >= self.checkpoints:
            raise _Interrupt()


# jit_compile: three XLA compilations of the train step, 45-85 s on the 2-core CPU, so -m slow.
@pytest.mark.parametrize("mode", [{"mixed_precision": "mixed_bfloat16"},
                                  pytest.param({"jit_compile": True}, marks=pytest.mark.slow)],
                         ids=["mixed_bfloat16", "jit_compile"])
def test_gpu_paths_train_resume_exactly_and_leave_the_policy(synthetic_root, tmp_path, mode):
    from tfseg.training.train import train

    before = keras.mixed_precision.global_policy().name
    options = {"model_options": {"base_filters": 4, "depth": 2, "dropout": 0.5}, "steps": 12, "checkpoint_every": 3,
               **mode}
    straight, _ = train(None, **tiny_config(synthetic_root, tmp_path / "straight", **options))
    assert keras.mixed_precision.global_policy().name == before
    if "mixed_precision" in mode:
        assert straight.layers[-2].compute_dtype == "bfloat16"

    interrupted = tiny_config(synthetic_root, tmp_path / "interrupted", **options)
    with pytest.raises(_Interrupt):
        train(None, callbacks=[_InterruptAfter(tmp_path / "interrupted", 2)], **interrupted)
    assert keras.mixed_precision.global_policy().name == before, "an interrupted run left its policy behind"
    train(None, **interrupted)
    assert_same_weights(tmp_path / "straight" / "model.keras", tmp_path / "interrupted" / "model.keras")


def test_a_restart_with_another_configuration_is_refused_naming_the_keys(synthetic_root, tmp_path):
    from tfseg.training.train import train

    config = tiny_config(synthetic_root, tmp_path / "run", steps=4, checkpoint_every=2)
    train(None, **config)
    for changed in ({"batch_size": 2}, {"crop_size": [24, 24], "seed": 3}, {"steps": 8}):
        with pytest.raises(ValueError, match="another configuration") as error:
            train(None, **{**config, **changed})
        for key in changed:
            assert key in str(error.value)
    # execution keys may change; a longer run continues with extend=True
    train(None, **{**config, "checkpoint_every": 1, "verbose": 0})
    train(None, extend=True, **{**config, "steps": 6})
    assert run_log(tmp_path / "run")[-1]["to_step"] == 6
    train(None, restart=True, **{**config, "batch_size": 2})
    record = run_log(tmp_path / "run")[-1]
    assert record["from_step"] == 0 and record["to_step"] == 4


def _uneven_void_folder(root, count=8, size=(24, 32)):
    """A folder dataset whose label maps are void on 0%..88% of their rows: replicas see unequal counts."""
    import cv2

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("a\nb\nc\n")
    for i in range(count):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        label = (image[..., 0] // 86).astype(np.uint8)  # the class follows the red channel
        label[: size[0] * i // count] = 255
        cv2.imwrite(str(root / "images" / f"{i}.png"), image)
        cv2.imwrite(str(root / "labels" / f"{i}.png"), label)
    return root


def test_one_device_and_two_replicas_train_the_same_weights(tmp_path):
    """Same global batches on 1 device and on 2 replicas (void spread unevenly): same weights and BN statistics."""
    root = _uneven_void_folder(tmp_path / "data")
    weights = {}
    for strategy in ("default", "mirrored"):
        config = tiny_config(root, tmp_path / strategy, dataset="folder", strategy=strategy, logical_cpus=2,
                             crop_size=[24, 32], steps=6, learning_rate=0.2, scale_range=[1.0, 1.0],
                             model_options={"base_filters": 4, "depth": 2})
        run_training(write_config(tmp_path / f"{strategy}.json", config))
        weights[strategy] = tmp_path / strategy / "model.keras"
    model = keras.saving.load_model(weights["mirrored"], compile=False)
    assert any("moving_mean" in w.path for w in model.weights), "the model must have batch norm"
    assert_same_weights(weights["default"], weights["mirrored"], rtol=1e-5, atol=1e-6)


def test_weight_decay_applies_to_kernels_by_layer_type():
    from tfseg.registry import build_model
    from tfseg.training.config import TrainConfig
    from tfseg.training.model_setup import decayed_kernels, make_optimizer

    unet = build_model("unet", 3, base_filters=2, depth=1)
    assert [v.path for v in decayed_kernels(unet)] == [
        "down1_conv1/kernel", "down1_conv2/kernel", "bottom_conv1/kernel", "bottom_conv2/kernel",
        "up1_upconv/kernel", "up1_conv1/kernel", "up1_conv2/kernel", "logits/kernel",
    ]  # not: batch norm's gamma/beta, up1_upconv/bias, logits/bias

    model = build_model("deeplab_v3plus", 3, backbone="mobilenet_v2", decoder=True, atrous_rates=(6,))
    decayed = {v.path for v in decayed_kernels(model)}
    depthwise = {v.path for v in model.trainable_variables if v.path.endswith("depthwise/kernel")}
    assert len(depthwise) == 20 and not depthwise & decayed  # 17 inverted residuals, ASPP, 2 decoder convs
    assert len(decayed) == 42 and {"Conv1/kernel", "block_16_project/kernel", "aspp1_pointwise/kernel",
                                   "decoder_conv1_pointwise/kernel", "logits/kernel"} <= decayed

    # AdamW's decoupled decay moves exactly those kernels (zero gradients: Adam's update is 0)
    config = TrainConfig(model="deeplab_v3plus", optimizer="adamw", learning_rate=0.1, decoupled_weight_decay=0.5,
                         steps=1)
    optimizer = make_optimizer(config, 1, model)
    variables = model.trainable_variables
    before = [np.array(v) for v in variables]
    optimizer.apply_gradients(zip([keras.ops.zeros_like(v) for v in variables], variables))
    for variable, old in zip(variables, before):
        expected = old * (1 - 0.1 * 0.5) if variable.path in decayed else old
        np.testing.assert_allclose(np.array(variable), expected, rtol=1e-6, atol=1e-7, err_msg=variable.path)


def test_weight_decay_keys_have_one_meaning():
    from tfseg.training.config import TrainConfig

    with pytest.raises(ValueError, match="decoupled_weight_decay.*adamw"):
        TrainConfig(optimizer="sgd", decoupled_weight_decay=1e-4, steps=1)
    for bad in ({"steps": -5}, {"steps": 0}, {"batch_size": 0}, {"learning_rate": 0}, {"eval_scales": [0]}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**{"steps": 1, **bad})


@pytest.mark.parametrize("arguments, expected", [
    (["--steps", "-5", "--dataset", "camvid"], "steps=-5 must be a positive integer"),
    (["--dataset", "voc", "--data-root", "/nonexistent/VOC2012", "--steps", "3"], "/nonexistent/VOC2012"),
    ([], "--steps N"),
    (["--steps", "3"], "--data-root"),
], ids=["negative_steps", "missing_voc_root", "bare", "no_data"])
def test_train_reports_bad_input_in_one_line_before_writing(tmp_path, arguments, expected):
    from tfseg.cli import main

    out = tmp_path / "out"
    import contextlib
    import io

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(["train", *arguments, "--out", str(out)])
    message = stderr.getvalue().strip()
    assert code == 2 and expected in message and "\n" not in message, message
    assert not out.exists(), "nothing may be written before the input is checked"


def test_train_says_what_it_trains_counts_run_steps_and_names_its_files(synthetic_root, tmp_path):
    config = write_config(tmp_path / "c.json", tiny_config(synthetic_root, tmp_path / "run", steps=6, verbose=1,
                                                          val_split="val", eval_every_epochs=1))
    result = subprocess.run(train_command(config), capture_output=True, text=True, env=subprocess_env(), cwd=REPO,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "tfseg train: unet" in out and "parameters" in out and "synthetic:train, 16 images" in out
    assert "6 steps of batch 4" in out and "strategy: default (1 replica)" in out
    assert "step 6/6" in out and "/4 " not in out, "progress counts the run's steps, not the epoch's"
    assert "final model on synthetic:val" in out and "best.keras" in out and "wrote in" in out
    from tfseg.data import open_dataset
    from tfseg.inference.metadata import read_keras_info

    for saved in ("model.keras", "best.keras"):
        info = read_keras_info(tmp_path / "run" / saved)
        assert info.class_names == open_dataset("synthetic", synthetic_root).class_names and len(info.palette) == 6
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    logged = [r for r in run_log(tmp_path / "run") if "val_mean_iou" in r]
    assert best["mean_iou"] == max(r["val_mean_iou"] for r in logged) and (tmp_path / "run" / "best.keras").is_file()
