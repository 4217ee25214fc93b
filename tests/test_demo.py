"""The main job: ``tfseg demo`` writes its report folder (a short run)."""

from __future__ import annotations

import json
import subprocess
import sys

from training_helpers import REPO, subprocess_env


def test_demo_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "tfseg.cli", "demo", "--out", str(out), "--steps", "3"],
                            capture_output=True, text=True, env=subprocess_env(), cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "frequency_weighted_iou"):
        assert 0.0 <= metrics[key] <= 1.0
        assert 0.0 <= metrics["crf"][key] <= 1.0
    assert sum(map(sum, metrics["confusion_matrix"])) > 0
    for name in ("confusion.png", "confusion_crf.png", "overlay_0.png", "model.keras"):
        assert (out / name).is_file(), name
    assert "oneDNN custom operations" not in result.stderr and "cpu_feature_guard" not in result.stderr
