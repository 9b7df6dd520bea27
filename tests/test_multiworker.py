"""MultiWorkerMirroredStrategy with two worker processes on this machine."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = os.path.join(os.path.dirname(__file__), "distributed", "multiworker_worker.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def run_two_workers(recipe, tmp_path, timeout=420):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, outs = [], []
    try:
        for index in range(2):
            out = str(tmp_path / f"worker{index}.npz")
            env = {
                **os.environ,
                "TF_CONFIG": json.dumps(
                    {"cluster": cluster, "task": {"type": "worker", "index": index}}
                ),
                "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, WORKER, recipe, out],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
            outs.append(out)
        logs = []
        for p in procs:
            stdout, _ = p.communicate(timeout=timeout)
            logs.append(stdout)
        for p, log in zip(procs, logs):
            assert p.returncode == 0, log[-4000:]
            assert "worker done 2" in log, log[-4000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [np.load(o) for o in outs], logs


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["plain", "gradual_dlr"])
def test_two_workers_end_with_identical_weights(recipe, tmp_path):
    (w0, w1), logs = run_two_workers(recipe, tmp_path)
    if recipe == "gradual_dlr":
        # Both workers went through both unfreeze events inside one fit.
        for log in logs:
            assert "unfrozen_groups [0, 1, 2]" in log, log[-2000:]
    finals = [k for k in w0.files if k.startswith("final_")]
    assert finals and sorted(w0.files) == sorted(w1.files)
    moved = 0
    for key in finals:
        np.testing.assert_array_equal(w0[key], w1[key])
        moved += int(not np.array_equal(w0[key], w0[key.replace("final", "initial")]))
    assert moved > 0, "training did not change any weight"


def test_enable_multi_worker_fit_leaves_mirrored_strategy_alone(strategy):
    import keras

    from keras_transfer.distribute import enable_multi_worker_fit

    assert enable_multi_worker_fit() is True
    assert enable_multi_worker_fit() is True  # idempotent
    with strategy.scope():
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
    x = np.ones((8, 3), "float32")
    history = model.fit(x, np.zeros((8, 1)), batch_size=4, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
