"""The README's deployment example runs as written: export, predict and bench on a small U-Net."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def example_commands():
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- worked-example:start -->\s*```bash\n(.*?)```\s*<!-- worked-example:end -->", text, re.S)
    assert block, "README.md lost its worked example markers"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.lstrip().startswith("#")]


def as_argv(line):
    argv = shlex.split(line)
    if argv[0] == "python3":
        return [sys.executable, *argv[1:]]
    if argv[0] == "tfseg" and shutil.which("tfseg") is None:
        return [sys.executable, "-m", "tfseg.cli", *argv[1:]]
    return argv


@pytest.mark.slow  # six commands, each starting TensorFlow: about 3 minutes on the shared 2-core machine
def test_readme_worked_example_runs(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    outputs = []
    for line in example_commands():
        done = subprocess.run(as_argv(line), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{line}\n{done.stderr[-3000:]}"
        assert "I0000" not in done.stderr and "W0000" not in done.stderr, done.stderr
        outputs.append(done.stdout)
    assert (tmp_path / "unet_savedmodel" / "saved_model.pb").is_file()
    for name, fmt, floor in (("unet_savedmodel", "saved_model", 100.0), ("unet.tflite", "tflite", 99.9),
                             ("unet_int8.tflite", "tflite (int8)", 0.0)):
        report = json.loads((tmp_path / f"{name}.parity.json").read_text())
        assert report["images"]["source"] == "camvid:val:2"
        assert report["formats"][fmt]["pixel_agreement"] >= floor
        assert (tmp_path / f"{name}.parity.txt").read_text().startswith("parity against keras on 2 images")
    assert len(list((tmp_path / "predictions").glob("*_labels.png"))) == 2
    assert len(list((tmp_path / "predictions").glob("*_overlay.png"))) == 2
    bench = outputs[-1]
    assert re.search(r"^\| int8 \| [\d.]+ \| [\d.]+ \| [\d.]+ \| \d+% \|$", bench, re.M), bench
