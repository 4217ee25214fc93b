"""The main job: ``tfseg demo`` writes its report folder (a short run)."""

from __future__ import annotations

import json
import subprocess
import sys

from training_helpers import REPO, subprocess_env


def test_demo_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "tfseg.cli", "demo", "--out", str(out), "--steps", "3"],
                            capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    samples = sorted(p.name for p in (REPO / "zoo" / "samples").glob("*.png"))
    assert [s["image"] for s in metrics["samples"]] == samples
    for sample in metrics["samples"]:
        assert 0.0 < sample["crf_changed_pixels"] < 0.5  # the CRF refines, it does not repaint
        assert abs(sum(sample["class_shares_with_crf"].values()) - 1.0) < 1e-3
        stem = sample["image"][:-4]
        for suffix in ("_compare.png", "_overlay.png", "_labels.png"):
            assert (out / f"{stem}{suffix}").is_file(), stem + suffix
    assert metrics["tflite"]["pixel_agreement_with_keras"] >= 99.9
    assert (out / "model.tflite").is_file() and (out / "model.tflite.parity.json").is_file()
    tuned = metrics["fine_tune"]
    assert tuned["steps"] == 3 and tuned["classes"] == ["drivable", "walkable", "other"]
    assert tuned["eval_split"] == "held-out sequence 0006R0"
    for scores in (tuned["fine_tuned"], tuned["merged_11_class"]):
        assert 0.0 <= scores["mean_iou"] <= 1.0
    assert tuned["merged_11_class"]["mean_iou"] > 0.5, "the 11-class model knows roads and pavements"
    assert (out / "robot.tflite").is_file() and tuned["tflite"]["pixel_agreement_with_keras"] >= 99.0
    assert "fine-tuned" in result.stdout and "predictions merged" in result.stdout
    assert metrics["card"]["val_mean_iou"] > 40
    assert "oneDNN custom operations" not in result.stderr and "cpu_feature_guard" not in result.stderr
