"""One worker of a two-process MultiWorkerMirroredStrategy run.

Usage: python multiworker_worker.py RECIPE OUT_NPZ  (with TF_CONFIG set)

Runs a small fine-tune under `tf.distribute.MultiWorkerMirroredStrategy` and
writes the final weights to OUT_NPZ so the parent test can compare workers.
"""

import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12, 12, 3)).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0).astype("int64")
    return x, y


def build_plain():
    inputs = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(2, name="head")(h)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model, []


def build_gradual_dlr():
    """A fine-tune as users run it: gradual unfreezing + DiscriminativeLR."""
    from keras_transfer.backbones import Backbone
    from keras_transfer.callbacks import GradualUnfreezing
    from keras_transfer.optimizers import DiscriminativeLR

    inputs = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(4, 3, activation="relu", name="low_conv")(inputs)
    h = keras.layers.BatchNormalization(name="low_bn")(h)
    h = keras.layers.Conv2D(4, 3, activation="relu", name="high_conv")(h)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    backbone = Backbone(
        inputs, h, groups={"low": "low_.*", "high": "high_conv|pool"}, name="bb"
    )
    model = keras.Sequential([backbone, keras.layers.Dense(2, name="head")])
    optimizer = DiscriminativeLR(
        keras.optimizers.Adam(1e-2), layer_decay=0.5, groups=backbone
    )
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    unfreezing = GradualUnfreezing(backbone, schedule=[1, 2], freeze_bn=True)
    return model, [unfreezing]


RECIPES = {"plain": build_plain, "gradual_dlr": build_gradual_dlr}


def main():
    from keras_transfer.distribute import enable_multi_worker_fit

    assert enable_multi_worker_fit()
    recipe, out = sys.argv[1], sys.argv[2]
    keras.utils.set_random_seed(0)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    with strategy.scope():
        model, callbacks = RECIPES[recipe]()
    initial = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    x, y = data()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA
    )
    ds = ds.with_options(options)
    history = model.fit(
        ds, epochs=3, steps_per_epoch=4, callbacks=callbacks, verbose=0
    )
    print("unfrozen_groups", history.history.get("unfrozen_groups"), flush=True)
    final = [keras.ops.convert_to_numpy(w) for w in model.weights]
    np.savez(
        out,
        **{f"final_{i}": w for i, w in enumerate(final)},
        **{f"initial_{i}": w for i, w in enumerate(initial)},
    )
    print("worker done", strategy.num_replicas_in_sync, flush=True)


if __name__ == "__main__":
    main()
