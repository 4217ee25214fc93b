"""Nothing a user does by mistake loses work: typos after --restart, killed writes, damaged and changed data,
refused combinations, and the messages each of them gets (README: "What survives what")."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

import tfseg  # noqa: F401  (registers its layers for loading saved models)

from training_helpers import REPO, subprocess_env, tiny_config, train_command, write_config


@pytest.fixture(scope="module")
def small_root(tmp_path_factory):
    """A 4-train / 2-val synthetic set of 32x32 JPEGs (batch 2: 2 steps per epoch), copied per test that damages it."""
    from tfseg.data.synthetic import write_synthetic_voc

    return write_synthetic_voc(tmp_path_factory.mktemp("small"), num_train=4, num_val=2, size=(32, 32))


def small_config(root, out_dir, **overrides):
    return tiny_config(root, out_dir, **{"batch_size": 2, "steps": 2, "checkpoint_every": 1, **overrides})


@pytest.fixture(scope="module")
def finished_run(small_root, tmp_path_factory):
    """A 2-step run with periodic evaluation: checkpoints, best.keras, best.json, logs, model.keras."""
    from tfseg.training.train import train

    out = tmp_path_factory.mktemp("finished") / "run"
    train(None, **small_config(small_root, out, val_split="val", eval_every_epochs=1))
    assert (out / "best.keras").is_file() and (out / "model.keras").is_file()
    return out


def copy_of(folder, tmp_path, name="run"):
    return shutil.copytree(folder, tmp_path / name)


def cli(*arguments):
    """``tfseg ARGUMENTS`` in this process: (exit code, stderr)."""
    from tfseg.cli import main

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = main(list(map(str, arguments)))
    return code, stderr.getvalue().strip()


def snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_typo_after_restart_leaves_the_old_run_untouched(finished_run, small_root, tmp_path):
    run = copy_of(finished_run, tmp_path)
    before = snapshot(run)
    config = write_config(tmp_path / "c.json", small_config(small_root, run, val_split="val", eval_every_epochs=1))
    for typo in (["--set", "model=nope"], ["--model-options", '{"depth": 2, "base_filterz": 4}'],
                 ["--model", "deeplab_v3plus", "--model-options", '{"backbone": "mobilenet_v9"}'],
                 ["--data-root", tmp_path / "nope"], ["--crop", "0x32"]):
        code, message = cli("train", "--config", config, "--restart", *typo)
        assert code == 2 and "\n" not in message, message
        assert snapshot(run) == before, f"{typo} changed the old run's files"
    assert "nope" in cli("train", "--config", config, "--restart", "--set", "model=nope")[1]


def test_restart_removes_the_old_runs_best_model_and_logs(finished_run, small_root, tmp_path):
    from tfseg.training.train import train

    run = copy_of(finished_run, tmp_path)
    old_parameters = keras.saving.load_model(run / "model.keras").count_params()
    train(None, restart=True, **small_config(small_root, run, model_options={"base_filters": 2, "depth": 1}))
    assert not (run / "best.keras").exists() and not (run / "best.json").exists()
    assert [json.loads(line)["from_step"] for line in (run / "train_log.jsonl").read_text().splitlines()] == [0]
    assert keras.saving.load_model(run / "model.keras").count_params() < old_parameters  # the new, smaller U-Net


class _Interrupted(Exception):
    pass


def test_an_interrupted_write_of_best_keras_leaves_the_previous_best(finished_run, tmp_path, monkeypatch):
    from tfseg.inference.metadata import save_keras_model

    best = copy_of(finished_run, tmp_path) / "best.keras"
    previous = [np.asarray(w) for w in keras.saving.load_model(best).get_weights()]
    newer = keras.saving.load_model(best)
    newer.set_weights([w + 1 for w in previous])
    real_write = zipfile.ZipFile.writestr

    def write_then_die(archive, name, data, *args, **kwargs):
        if str(name).endswith(".h5"):  # the model's config is in the archive, its weights are not
            raise _Interrupted()
        real_write(archive, name, data, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "writestr", write_then_die)
    with pytest.raises(_Interrupted):
        save_keras_model(newer, best)
    monkeypatch.undo()
    for kept, old in zip(keras.saving.load_model(best).get_weights(), previous):
        np.testing.assert_array_equal(kept, old)
    assert sorted(p.name for p in best.parent.iterdir() if p.name.startswith(".")) == []


def test_a_run_killed_while_a_checkpoint_is_written_resumes_from_the_one_before(small_root, tmp_path, monkeypatch):
    """Interrupted after the files of ckpt-3, before the index names them: the resume starts at step 2."""
    import tensorflow as tf

    from training_helpers import assert_same_weights

    from tfseg.training.train import train

    options = {"steps": 4, "model_options": {"base_filters": 4, "depth": 2, "dropout": 0.5}}
    train(None, **small_config(small_root, tmp_path / "straight", **options))
    real_record = tf.train.CheckpointManager._record_state

    def record_unless_step_3(manager):
        if manager.latest_checkpoint.endswith("-3"):
            raise _Interrupted()
        real_record(manager)

    monkeypatch.setattr(tf.train.CheckpointManager, "_record_state", record_unless_step_3)
    with pytest.raises(_Interrupted):
        train(None, **small_config(small_root, tmp_path / "killed", **options))
    monkeypatch.undo()
    assert tf.train.latest_checkpoint(str(tmp_path / "killed" / "checkpoints")).endswith("ckpt-2")
    train(None, **small_config(small_root, tmp_path / "killed", **options))
    assert json.loads((tmp_path / "killed" / "train_log.jsonl").read_text().splitlines()[-1])["from_step"] == 2
    assert_same_weights(tmp_path / "straight" / "model.keras", tmp_path / "killed" / "model.keras")


def truncate(path, keep=0.8):
    """Cut ``path`` to ``keep`` of its bytes: a JPEG keeps its header and decodes in part (grey below the cut)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_a_truncated_jpeg_ends_the_resume_in_one_line_naming_it_and_the_checkpoint_loads(
        finished_run, small_root, tmp_path):
    import tensorflow as tf

    root = copy_of(small_root, tmp_path, "data")
    run = copy_of(finished_run, tmp_path)
    damaged = sorted((root / "JPEGImages").glob("train_*.jpg"))[1]
    truncate(damaged)
    config = write_config(tmp_path / "c.json", small_config(root, run, steps=4, val_split="val", eval_every_epochs=1))
    code, message = cli("train", "--config", config, "--extend")
    assert code == 2 and "\n" not in message and f"{damaged} is truncated (the file ends" in message, message
    latest = tf.train.latest_checkpoint(str(run / "checkpoints"))
    assert latest.endswith("ckpt-2") and "batches" in str(tf.train.load_checkpoint(latest).get_variable_to_shape_map())


def test_with_skip_damaged_a_truncated_image_is_left_out_and_counted(small_root, tmp_path, capsys):
    root = copy_of(small_root, tmp_path, "data")
    damaged = sorted((root / "JPEGImages").glob("train_*.jpg"))[1]
    truncate(damaged)
    config = write_config(tmp_path / "c.json", small_config(root, tmp_path / "run", steps=1, verbose=1))
    capsys.readouterr()
    assert cli("train", "--config", config, "--skip-damaged")[0] == 0
    out = capsys.readouterr().out
    assert "synthetic:train, 3 images" in out, out
    lines = [line for line in out.splitlines() if line.startswith("skipped")]
    assert len(lines) == 2 and all(f"skipped 1 damaged file(s) (skip_damaged; first: {damaged} is truncated" in line
                                   for line in lines), lines  # at the start and in the end summary


def test_a_file_that_fails_to_decode_during_training_ends_the_run_in_one_line(small_root, tmp_path):
    """Header and end marker intact, the compressed data damaged: found by the decoder, in the input stream."""
    root = copy_of(small_root, tmp_path, "data")
    label = sorted((root / "SegmentationClass").glob("train_*.png"))[2]
    data = bytearray(label.read_bytes())
    data[len(data) // 2: len(data) // 2 + 8] = bytes(8)
    label.write_bytes(bytes(data))
    config = write_config(tmp_path / "c.json", small_config(root, tmp_path / "run"))
    result = subprocess.run(train_command(config), capture_output=True, text=True, env=subprocess_env(), cwd=REPO,
                            timeout=120)
    errors = [line for line in result.stderr.splitlines() if line.startswith("tfseg train")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr[-3000:]
    assert f"cannot read label map {label}: it is corrupt" in errors[0]
    assert "Traceback" not in result.stderr and "terminate" not in result.stderr


def test_evaluation_of_a_truncated_image_ends_in_one_line_naming_it(finished_run, small_root, tmp_path):
    root = copy_of(small_root, tmp_path, "data")
    damaged = sorted((root / "JPEGImages").glob("val_*.jpg"))[0]
    truncate(damaged)
    code, output = cli("eval", finished_run / "model.keras", "--dataset", "synthetic", "--data-root", root)
    message = output.splitlines()[-1]  # after the progress lines
    assert code == 2 and message.startswith("tfseg eval: error: cannot read image") and output.count("error") == 1
    assert f"{damaged}: it is truncated (the file ends" in message, output


def test_a_resume_on_changed_training_files_is_refused_naming_them(finished_run, small_root, tmp_path):
    from tfseg.training.train import InvalidRun, train

    root = copy_of(small_root, tmp_path, "data")
    run = copy_of(finished_run, tmp_path)
    (root / "ImageSets/Segmentation/train.txt").write_text(
        "\n".join((root / "ImageSets/Segmentation/train.txt").read_text().split()[:-1]))
    config = small_config(root, run, val_split="val", eval_every_epochs=1)
    before = snapshot(run)
    with pytest.raises(InvalidRun, match=r"training files changed .*1 file pair\(s\) removed \(JPEGImages/train_00003"):
        train(None, **config)
    assert snapshot(run) == before
    train(None, extend=True, **{**config, "steps": 3})  # continue on the files as they are now
    assert json.loads((run / "train_log.jsonl").read_text().splitlines()[-1])["from_step"] == 2


def test_class_weights_are_counted_on_labels_once_per_dataset(small_root, tmp_path, monkeypatch):
    import tfseg.data.base as base
    from tfseg.training.train import TrainingRun
    from tfseg.training.config import load_config

    config = load_config(None, **small_config(small_root, tmp_path / "run", class_weights="median_frequency"))

    def no_images(path):
        raise AssertionError(f"class weights decoded the image {path}")

    monkeypatch.setattr(base, "read_image", no_images)
    run = TrainingRun(config)
    weights = run.class_weights()
    assert len(weights) == 6 and max(weights) > 1
    (tmp_path / "run").mkdir()
    run.save_class_weights()

    def no_labels(*args):
        raise AssertionError("class weights counted again")

    monkeypatch.setattr(base, "read_label", no_labels)
    import tfseg.data.pipeline as pipeline

    monkeypatch.setattr(pipeline, "read_label", no_labels)
    assert TrainingRun(config).class_weights() == weights


def test_jit_compile_with_replicas_is_refused_when_configured():
    from tfseg.training.config import TrainConfig

    for strategy in ({"strategy": "mirrored"}, {"strategy": "auto", "logical_cpus": 2}, {"strategy": "multi_worker"}):
        with pytest.raises(ValueError, match="jit_compile=True with strategy"):
            TrainConfig(steps=1, jit_compile=True, **strategy)
    TrainConfig(steps=1, jit_compile=True)


def test_adamw_has_no_hidden_l2_term():
    from tfseg.training.config import TrainConfig

    assert TrainConfig(steps=1, optimizer="adamw").weight_decay == 0.0
    assert TrainConfig(steps=1).weight_decay == 4e-5
    with pytest.raises(ValueError, match="weight_decay=0.0001 .* with optimizer 'adamw'"):
        TrainConfig(steps=1, optimizer="adamw", weight_decay=1e-4)


def test_weight_decay_skips_depthwise_and_decays_separable_pointwise_kernels():
    from tfseg.training.model_setup import decayed_kernels

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.DepthwiseConv2D(3, name="depthwise")(inputs)
    x = keras.layers.SeparableConv2D(4, 3, name="separable")(x)
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1, name="logits")(x))
    assert sorted(v.path for v in decayed_kernels(model)) == ["logits/kernel", "separable/pointwise_kernel"]


def test_a_bug_inside_training_keeps_its_traceback(small_root, tmp_path, monkeypatch):
    import tfseg.training.train as training

    def broken(*args):
        raise TypeError("a bug, not bad input")

    monkeypatch.setattr(training, "append_log", broken)
    config = write_config(tmp_path / "c.json", small_config(small_root, tmp_path / "run"))
    with pytest.raises(TypeError, match="a bug, not bad input"):
        cli("train", "--config", config)


def test_the_private_keras_attributes_training_uses_exist():
    from tfseg.training.keras_internals import USED, require

    for cls, attribute, _ in USED:
        instance = cls() if cls is not keras.Model else keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        require(instance, attribute)
    with pytest.raises(RuntimeError, match=r"keras 3\.\d+.*BatchNormalization has no attribute _renamed"):
        require(keras.layers.BatchNormalization(), "_renamed")


def test_keras_is_pinned_to_the_tested_range():
    import re

    from importlib.metadata import version

    for path in (REPO / "requirements.txt", REPO / "pyproject.toml"):
        pin = re.search(r'keras(>=[\d.]+,<[\d.]+)', path.read_text())
        assert pin, f"{path.name} does not pin keras"
        low, high = re.findall(r"[\d.]+", pin.group(1))
        installed = tuple(int(v) for v in version("keras").split(".")[:2])
        assert tuple(map(int, low.split(".")[:2])) <= installed < tuple(map(int, high.split(".")[:2]))


# --- inference: damaged files, odd images, threads, conversions, machine-readable output ---------------------


@pytest.fixture(scope="module")
def tiny_keras_file(tmp_path_factory):
    from tfseg.inference.metadata import save_keras_model

    keras.utils.set_random_seed(0)
    model = tfseg.build_model("unet", 3, base_filters=2, depth=1)
    return save_keras_model(model, tmp_path_factory.mktemp("tiny") / "tiny.keras")


def test_a_cut_off_keras_file_is_called_damaged_not_missing(tiny_keras_file, tmp_path):
    cut = shutil.copy(tiny_keras_file, tmp_path / "cut.keras")
    truncate(cut, keep=0.5)
    with pytest.raises(ValueError, match=r"cut\.keras is damaged \(.* cut off"):
        tfseg.predict(cut, np.zeros((32, 32, 3), np.uint8))


def test_a_16_bit_png_is_read_as_8_bits(tiny_keras_file, tmp_path):
    import cv2

    from tfseg.data.base import read_image

    image = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "deep.png"), image[..., ::-1].astype(np.uint16) * 257)
    with pytest.warns(UserWarning, match="16-bit pixels"):
        np.testing.assert_array_equal(read_image(tmp_path / "deep.png"), image)
    with pytest.warns(UserWarning, match="16-bit pixels"):
        labels = tfseg.predict(tiny_keras_file, str(tmp_path / "deep.png"))
    np.testing.assert_array_equal(labels, tfseg.predict(tiny_keras_file, image))


def test_threads_for_a_keras_model_are_honoured_or_refused(tiny_keras_file):
    with pytest.raises(ValueError, match="--threads 3: TensorFlow already runs in this process"):
        tfseg.predict(tiny_keras_file, np.zeros((32, 32, 3), np.uint8), num_threads=3)
    script = (f"import numpy as np, tensorflow as tf, tfseg; tfseg.predict({str(tiny_keras_file)!r}, "
              "np.zeros((32, 32, 3), np.uint8), num_threads=1); "
              "print(tf.config.threading.get_intra_op_parallelism_threads())")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=subprocess_env(),
                            cwd=REPO, timeout=120)
    assert result.stdout.split() == ["1"], result.stderr[-2000:]


def test_converting_a_saved_model_that_holds_a_crf_to_tflite_is_refused_at_once(tiny_keras_file, tmp_path):
    import time

    from tfseg.export import saved_model, tflite

    saved_model(tiny_keras_file, tmp_path / "with_crf", crf=True)
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"with_crf holds a dense CRF.*convert the \.keras file with --crf"):
        tflite(tmp_path / "with_crf", tmp_path / "m.tflite")
    assert time.perf_counter() - started < 1.0 and not (tmp_path / "m.tflite").exists()


def test_eval_json_prints_only_json_on_stdout(finished_run, small_root):
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code, _ = cli("eval", finished_run / "model.keras", "--dataset", "synthetic", "--data-root", small_root,
                      "--json")
    assert code == 0
    scores = json.loads(stdout.getvalue())
    assert set(scores) == {"plain"} and 0 <= scores["plain"]["mean_iou"] <= 1


def test_a_full_disk_while_best_keras_is_written_keeps_the_previous_best_and_says_so(
        finished_run, small_root, tmp_path, monkeypatch):
    import errno

    import tensorflow as tf

    run = copy_of(finished_run, tmp_path)
    previous = (run / "best.keras").read_bytes()
    (run / "best.json").write_text(json.dumps({"step": 2, "mean_iou": -0.5, "split": "synthetic:val"}))  # to beat
    real_save = keras.Model.save

    def save_until_full(model, path, *args, **kwargs):
        if "best" in str(path):
            with open(path, "wb") as file:
                file.write(b"PK\x03\x04 half a zip")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(model, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", save_until_full)
    config = write_config(tmp_path / "c.json", small_config(small_root, run, steps=4, val_split="val",
                                                           eval_every_epochs=1))
    code, message = cli("train", "--config", config, "--extend")
    assert code == 2 and "\n" not in message and "is full" in message and "ckpt-4" in message, message
    assert (run / "best.keras").read_bytes() == previous
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-4")
