"""BaselineRun: trains the baseline alongside `model.fit`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.transferability import BaselineRun, TransferReport
from tests.testing import run_serialization_test


@keras_transfer_export("keras_transfer.tests.build_tiny_baseline")
def build_tiny_baseline():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(
        keras.optimizers.SGD(0.1),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def data(n=48):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = np.argmax(x[:, :3], axis=1).astype("int32")
    return x, y


def test_fit_trains_the_baseline_each_epoch():
    x, y = data()
    run = BaselineRun(build_tiny_baseline, x, y, validation_data=(x, y),
                      batch_size=8)
    model = build_tiny_baseline()
    model.fit(x, y, epochs=3, batch_size=8, validation_data=(x, y),
              callbacks=[run], verbose=0)
    before = build_tiny_baseline()  # same architecture, untrained
    assert len(run.baseline_history["loss"]) == 3
    assert len(run.transfer_history["val_loss"]) == 3
    # The baseline learned: its loss went down over the epochs and its
    # weights moved away from any fresh initialisation.
    assert run.baseline_history["loss"][-1] < run.baseline_history["loss"][0]
    assert run.baseline_model is not model
    assert run.baseline_model.optimizer.iterations.numpy() == 3 * 6
    assert before.optimizer.iterations.numpy() == 0
    report = run.report("val_loss")
    assert isinstance(report, TransferReport)
    assert report.epochs == 3
    # A second fit starts a fresh baseline and fresh records.
    model.fit(x, y, epochs=1, batch_size=8, callbacks=[run], verbose=0)
    assert len(run.baseline_history["loss"]) == 1
    assert run.baseline_model.optimizer.iterations.numpy() == 6


def test_dataset_input():
    x, y = data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    run = BaselineRun(build_tiny_baseline, ds, validation_data=ds)
    build_tiny_baseline().fit(ds, epochs=2, callbacks=[run], shuffle=False, verbose=0)
    assert len(run.baseline_history["val_accuracy"]) == 2


def test_under_strategy_matches_single_device(strategy):
    x, y = data()
    single = BaselineRun(build_tiny_baseline, x, y, batch_size=8)
    keras.utils.set_random_seed(3)
    model = build_tiny_baseline()
    keras.utils.set_random_seed(4)
    model.fit(x, y, epochs=2, batch_size=8, shuffle=False, callbacks=[single],
              verbose=0)
    distributed = BaselineRun(build_tiny_baseline, x, y, batch_size=8)
    keras.utils.set_random_seed(3)
    with strategy.scope():
        model = build_tiny_baseline()
    keras.utils.set_random_seed(4)
    model.fit(x, y, epochs=2, batch_size=8, shuffle=False,
              callbacks=[distributed], verbose=0)
    assert isinstance(
        distributed.baseline_model.distribute_strategy,
        tf.distribute.MirroredStrategy,
    )
    assert len(distributed.baseline_history["loss"]) == 2
    # Same seed, same data order: the two-replica baseline follows the
    # single-device one to float tolerance.
    np.testing.assert_allclose(
        distributed.baseline_history["loss"],
        single.baseline_history["loss"],
        rtol=1e-4,
    )


def test_config_round_trip():
    run = BaselineRun(build_tiny_baseline, batch_size=16, verbose=0)
    revived = run_serialization_test(run)
    assert revived.build_baseline is build_tiny_baseline
    assert revived.batch_size == 16


def test_bad_input():
    x, y = data()
    with pytest.raises(ValueError, match="`build_baseline` must be a function"):
        BaselineRun("not callable", x, y)
    with pytest.raises(ValueError, match="`batch_size`"):
        BaselineRun(build_tiny_baseline, x, y, batch_size=0)
    with pytest.raises(ValueError, match="`x` must be"):
        build_tiny_baseline().fit(
            x, y, epochs=1, callbacks=[BaselineRun(build_tiny_baseline)], verbose=0
        )
    with pytest.raises(ValueError, match="must return a compiled model"):
        build_tiny_baseline().fit(
            x, y, epochs=1, verbose=0,
            callbacks=[BaselineRun(lambda: keras.Sequential(
                [keras.Input((4,)), keras.layers.Dense(3)]), x, y)],
        )
    with pytest.raises(ValueError, match="No epochs recorded"):
        BaselineRun(build_tiny_baseline, x, y).report()
