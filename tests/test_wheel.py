"""The core promise, as a new user meets it: the wheel with no extras.

Builds the wheel from the tracked sources, installs it into a fresh virtual
environment with no extras (pip fetches TensorFlow, Keras and NumPy, from
its cache when it has them), and in that environment fine-tunes a tiny
model, exports it as a SavedModel, and checks that a TFLite export without
LiteRT names the extra to install.
"""

import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import importlib.util, os, sys
    import numpy as np
    import keras
    import keras_transfer
    from keras_transfer import export, fine_tune
    from keras_transfer.backbones import Backbone

    here = os.path.dirname(keras_transfer.__file__)
    assert here.startswith(sys.prefix), here  # the installed wheel
    missing = [m for m in ("keras_hub", "tensorflow_hub", "ai_edge_litert",
                           "keras_cv", "tqdm", "matplotlib")
               if importlib.util.find_spec(m) is not None]
    assert not missing, f"installed without being asked for: {missing}"

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    h = keras.layers.Dense(8, activation="relu", name="low")(inputs)
    h = keras.layers.Dense(8, activation="relu", name="high")(h)
    backbone = Backbone(inputs, h, groups={"low": "low", "high": "high"})
    model = keras.Sequential([backbone, keras.layers.Dense(3)])
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 0).astype("int64")
    history = fine_tune(model, backbone, (x, y), epochs=3, batch_size=8,
                        verbose=0)
    assert history.history["unfrozen_groups"] == [0, 1, 2], history.history

    out = sys.argv[1]
    result = export.to_saved_model(model, os.path.join(out, "saved_model"))
    assert result.parity_ok, result

    tflite = os.path.join(out, "model.tflite")
    try:
        export.to_tflite(model, tflite)
    except ImportError as e:
        message = str(e)
    else:
        raise SystemExit("to_tflite ran without LiteRT installed")
    hint = 'Install it with: pip install "keras-transfer[litert]"'
    assert message.endswith(hint), message
    assert not os.path.exists(tflite), "a file was left behind"
    print("WHEEL-OK", result.max_abs_diff)
    """
)


def _run(command, timeout, **kwargs):
    start = time.monotonic()
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, **kwargs
    )
    assert result.returncode == 0, (
        command, result.stdout[-3000:], result.stderr[-3000:]
    )
    print(f"{time.monotonic() - start:6.1f}s  {' '.join(command[:4])[:70]}")
    return result


@pytest.mark.slow
def test_wheel_without_extras_fine_tunes_and_exports(tmp_path):
    # The wheel is built from the tracked files only, outside the work tree.
    source = tmp_path / "source"
    files = _run(["git", "ls-files"], 60, cwd=ROOT).stdout.split()
    for name in files:
        if name.split("/")[0] in ("keras_transfer",) or "/" not in name:
            target = source / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(os.path.join(ROOT, name), target)
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "-q", "-w", str(dist), str(source)], 300)
    wheels = sorted(dist.glob("keras_transfer-*.whl"))
    assert len(wheels) == 1, wheels

    venv = tmp_path / "venv"
    try:
        _run([sys.executable, "-m", "venv", str(venv)], 300)
        python = str(venv / "bin" / "python")
        _run([python, "-m", "pip", "install", "-q", "--no-compile", str(wheels[0])],
             1200)
        out = tmp_path / "out"
        out.mkdir()
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        result = _run([python, "-c", SCRIPT, str(out)], 600, cwd=str(out), env=env)
        assert "WHEEL-OK" in result.stdout, result.stdout
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # about 2 GB
