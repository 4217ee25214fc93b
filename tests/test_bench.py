"""``tfseg bench``: multiply-adds counted on the graph, and the command's table on a tiny model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import keras
import pytest

import tfseg
from tfseg.bench import count_macs
from tfseg.bench.cpu import cpu_description, cpu_info

REPO = Path(__file__).resolve().parents[1]


def test_multiply_adds_match_a_hand_count():
    inputs = keras.Input((16, 20, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(inputs)  # 16*20*8 outputs x 3*3*3
    x = keras.layers.Conv2D(8, 3, padding="same", dilation_rate=2)(x)  # 16*20*8 x 3*3*8
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)  # 8*10*8 x 3*3
    x = keras.layers.Conv2DTranspose(4, 2, strides=2)(x)  # 8*10*8 inputs x 2*2*4
    x = keras.layers.Dense(5)(x)  # 16*20*5 x 4
    model = keras.Model(inputs, x)
    expected = 16 * 20 * 8 * 27 + 16 * 20 * 8 * 72 + 8 * 10 * 8 * 9 + 8 * 10 * 8 * 16 + 16 * 20 * 5 * 4
    assert count_macs(model, (16, 20)) == expected
    assert count_macs(model, (16, 20), batch_size=3) == 3 * expected


def test_multiply_adds_of_nested_backbones_are_counted():
    model = tfseg.build_model("deeplab_v3plus", 21, backbone="mobilenet_v2")
    macs = count_macs(model, (513, 513))
    # MobileNetV2 alone is about 0.3 GMAC at 224x224; at 513x513 (5.2x the pixels, output stride 16
    # so the last blocks run at stride 16 instead of 32) the model is a few GMAC.
    assert 2.0e9 < macs < 6.0e9


def run_cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tfseg.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_bench_command_prints_latency_and_matmul_fraction_per_format(tmp_path):
    done = run_cli("bench", "unet", "-o", "base_filters=4", "-o", "depth=2", "--num-classes", "5", "--size", "64x96",
                   "--formats", "keras,tflite,int8", "--repeats", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no TensorFlow or LiteRT log lines
    model = tfseg.build_model("unet", 5, (64, 96, 3), base_filters=4, depth=2)
    gmac = count_macs(model, (64, 96)) / 1e9
    assert f"{model.count_params():,} parameters, {gmac:.2f} GMAC" in done.stdout
    assert re.search(r"fp32 matmul 2048x2048x2048 in TensorFlow: [\d.]+ GFLOP/s", done.stdout)
    assert re.search(r"^CPU: .+; (has|lacks) .*avx2", done.stdout, re.M)
    rows = re.findall(r"^\| (keras|tflite|int8) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| (\d+)% \|$", done.stdout, re.M)
    assert [r[0] for r in rows] == ["keras", "tflite", "int8"]
    for _, latency, per_second, gflops, _ in rows:
        assert float(per_second) == pytest.approx(1e3 / float(latency), rel=0.02)
        assert float(gflops) == pytest.approx(2 * gmac / (float(latency) / 1e3), rel=0.05, abs=0.15)


def test_cpu_description_reads_the_model_name_and_instruction_sets(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Example CPU 9000\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n\n"
                       "processor\t: 1\nmodel name\t: Example CPU 9000\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n")
    name, sets = cpu_info(cpuinfo)
    assert name == "Example CPU 9000"
    assert sets == {"avx2": True, "fma": True, "avx512f": True, "avx512_vnni": True, "avx_vnni": False, "amx_int8": False}
    assert cpu_description(cpuinfo) == ("Example CPU 9000; has avx2, fma, avx512f, avx512_vnni; "
                                        "lacks avx_vnni, amx_int8")
    assert "instruction sets unknown" in cpu_description(tmp_path / "missing")


def test_bench_command_errors_are_one_line(tmp_path):
    done = run_cli("bench", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("tfseg bench: error: give a MODEL")
    done = run_cli("bench", "unet", "--formats", "keras,onnx", "--size", "32x32", cwd=tmp_path)
    assert done.returncode == 2 and "unknown format(s) ['onnx']" in done.stderr


@pytest.mark.slow
def test_peer_models_have_the_published_sizes():
    pytest.importorskip("keras_hub")
    from tfseg.bench.peer import keras_hub_deeplab_v3plus, tfseg_deeplab_v3plus

    hub, ours = keras_hub_deeplab_v3plus(), tfseg_deeplab_v3plus()
    assert abs(hub.count_params() - 39.2e6) < 0.05e6  # keras-hub's preset card: 39,190,656
    assert count_macs(hub, (512, 512)) / 1e9 == pytest.approx(30.3, abs=0.15)
    assert count_macs(ours, (512, 512)) / 1e9 == pytest.approx(37.0, abs=0.15)
