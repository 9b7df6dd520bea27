"""`python -m keras_transfer.demo` runs (quick mode) and prints real accuracies."""

import os
import re
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.realdata
def test_demo_quick_mode_runs_and_learns():
    env = dict(os.environ, KERAS_TRANSFER_QUICK="1")
    result = subprocess.run(
        [sys.executable, "-m", "keras_transfer.demo"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "(MobileNetV2)" in out  # the layer groups were recognised
    before = float(re.search(r"accuracy before fine-tuning: ([0-9.]+)", out).group(1))
    after = float(re.search(r"accuracy after fine-tuning: ([0-9.]+)", out).group(1))
    # 3 images per class, 10 classes: chance is 0.1; pretrained features
    # give far more.
    assert 0.25 < before <= 1.0, out
    assert 0.25 < after <= 1.0, out
