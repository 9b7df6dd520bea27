"""Cost of `GradualUnfreezing`: frozen-phase step time and retraces.

1. Step time while the backbone is frozen under `GradualUnfreezing`, over the
   step time of a statically frozen model (`backbone.trainable = False`).
   Target: <= 1.05. Both train functions are called in turn (A B A B ...) on
   the same batch and the medians are compared. The fully trainable model's
   step is printed too, to show what freezing saves.
2. Retraces: one `fit` with two unfreeze events must trace the train step
   exactly 1 + 2 times (once for the frozen phase, once per event).

MobileNetV2 (weights=None) at 96x96, batch 16, Adam.

Run: python benchmarks/bench_gradual_unfreezing.py [--steps 30]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_transfer.backbones import Backbone  # noqa: E402
from keras_transfer.callbacks import GradualUnfreezing  # noqa: E402

SIZE = 96
BATCH = 16


def make_model(seed=0):
    keras.utils.set_random_seed(seed)
    base = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), include_top=False, weights=None
    )
    backbone = Backbone.from_model(base)
    inputs = keras.Input((SIZE, SIZE, 3))
    features = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    outputs = keras.layers.Dense(10)(features)
    model = keras.Model(inputs, outputs)
    return model, backbone


def compiled(model):
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def count_traces(model):
    counter = {"traces": 0}
    original = model.train_step

    def counting_train_step(data):
        counter["traces"] += 1
        return original(data)

    model.train_step = counting_train_step
    return counter


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(BATCH, SIZE, SIZE, 3)).astype("float32")
    y = rng.integers(0, 10, size=(BATCH,)).astype("int64")
    dataset = tf.data.Dataset.from_tensors((x, y)).repeat()

    # A: frozen phase under GradualUnfreezing (one epoch of fit sets it up,
    # then its train function is the one timed).
    gradual, gradual_backbone = make_model()
    compiled(gradual)
    unfreezing = GradualUnfreezing(gradual_backbone, schedule={1000: 1})
    gradual.fit(x, y, batch_size=BATCH, epochs=1, callbacks=[unfreezing], verbose=0)
    assert gradual_backbone.trainable_group_names == [], "backbone not frozen"

    # B: statically frozen; C: everything trainable.
    static, static_backbone = make_model()
    static_backbone.trainable = False
    compiled(static).fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    full, _ = make_model()
    compiled(full).fit(x, y, batch_size=BATCH, epochs=1, verbose=0)

    iterators = {name: iter(dataset) for name in ("gradual", "static", "full")}
    models = {"gradual": gradual, "static": static, "full": full}
    times = {name: [] for name in models}
    for _ in range(3):  # warm-up
        for name, model in models.items():
            model.train_function(iterators[name])
    for _ in range(args.steps):
        for name, model in models.items():
            start = time.perf_counter()
            logs = model.train_function(iterators[name])
            float(keras.ops.convert_to_numpy(logs["loss"]))
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["gradual"] / medians["static"]
    print(f"MobileNetV2 {SIZE}x{SIZE}, batch {BATCH}, {args.steps} steps each:")
    for name, value in medians.items():
        print(f"  median step {name:8s} {1000 * value:7.1f} ms")
    print(
        f"frozen phase under GradualUnfreezing / statically frozen: {ratio:.3f} "
        f"(target <= 1.05) {'OK' if ratio <= 1.05 else 'ABOVE TARGET'}"
    )
    print(
        "statically frozen / fully trainable: "
        f"{medians['static'] / medians['full']:.3f}"
    )

    # Retraces in one fit with two unfreeze events.
    model, backbone = make_model(seed=1)
    compiled(model)
    counter = count_traces(model)
    unfreezing = GradualUnfreezing(backbone, schedule=[1, 2])
    model.fit(
        dataset, steps_per_epoch=2, epochs=3, callbacks=[unfreezing], verbose=0
    )
    events = len(unfreezing.events)
    print(
        f"retraces: {counter['traces']} traces for {events} unfreeze events "
        f"(expected {1 + events}: the frozen phase + one per event) "
        f"{'OK' if counter['traces'] == 1 + events else 'UNEXPECTED'}"
    )


if __name__ == "__main__":
    main()
