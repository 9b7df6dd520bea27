"""Test session set-up shared by tests/ and the docstring examples.

The suite runs on the Keras backend that `KERAS_BACKEND` names (TensorFlow
when unset).

On TensorFlow the CPU is split into two logical devices once per session,
before TensorFlow initialises its runtime, so every test can use
`MirroredStrategy` on `/cpu:0` and `/cpu:1` (the `strategy` fixture).

On JAX (`make test` runs a second pass with `KERAS_BACKEND=jax` over the
backend-neutral test files, see the Makefile) TensorFlow is not imported
here, JAX is given two CPU devices (`XLA_FLAGS`, for
`keras.distribution.DataParallel`), and the tests marked `tensorflow` (or
using the `strategy` fixture) are deselected.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TFHUB_CACHE_DIR", os.path.join(os.getcwd(), ".venv", "tfhub"))
if os.environ["KERAS_BACKEND"] == "jax":
    # Before JAX initialises: two CPU devices for `DataParallel` tests.
    _flag = "--xla_force_host_platform_device_count=2"
    if _flag.split("=")[0] not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_flag}".strip()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

ON_TENSORFLOW = keras.backend.backend() == "tensorflow"

if ON_TENSORFLOW:
    import tensorflow as tf

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


def pytest_collection_modifyitems(config, items):
    """Deselect the tests of the other backend.

    On TensorFlow, the tests marked `jax`; on JAX, the TensorFlow-only tests:
    those marked `tensorflow` or using the `strategy` fixture (`tf.distribute`).
    """
    keep, drop = [], []
    for item in items:
        if ON_TENSORFLOW:
            other = item.get_closest_marker("jax") is not None
        else:
            other = item.get_closest_marker("tensorflow") is not None or (
                "strategy" in getattr(item, "fixturenames", ())
            )
        (drop if other else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


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
    if ON_TENSORFLOW:
        doctest_namespace["tf"] = tf
