"""Test session set-up shared by tests/ and the docstring examples.

The CPU is split into two logical devices once per session, before TensorFlow
initialises its runtime, so every test can use `MirroredStrategy` on
`/cpu:0` and `/cpu:1` (the `strategy` fixture).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TFHUB_CACHE_DIR", os.path.join(os.getcwd(), ".venv", "tfhub"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402


def _split_cpu(n=2):
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError:
        # Already initialised (e.g. configured by an earlier import): keep it.
        pass


_split_cpu()


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts from the same seeds and a clean Keras session."""
    keras.utils.clear_session(free_memory=False)
    keras.utils.set_random_seed(1337)
    yield


@pytest.fixture(scope="session")
def strategy():
    """`MirroredStrategy` over the two logical CPU devices.

    One instance for the whole session: every new `MirroredStrategy` restarts
    its collective group and instance keys, and a second instance in the same
    process can collide with the first one's collectives ("Shape mismatch in
    the collective instance").
    """
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        pytest.fail(f"Expected two logical CPU devices, found {devices}")
    return tf.distribute.MirroredStrategy(devices[:2])


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace):
    doctest_namespace["np"] = np
    doctest_namespace["keras"] = keras
    doctest_namespace["tf"] = tf
