"""Domain adaptation benchmark: MNIST (source) -> scikit-learn 8x8 digits (target).

Source: 5000 MNIST training images mapped to the form of the UCI/sklearn
digits: crop to the bounding box of the ink, resize into 32x32 (aspect ratio
kept, centred), binarise, count the "on" pixels in 4x4 blocks -> 8x8 values
in 0..16. Target: the 1797
sklearn digits, unlabelled during training; we report accuracy on all of them.

Network: encoder Dense(128)-Dense(64) (ReLU), softmax head, discriminator
Dense(64); 30 epochs, batch 64, Adam(1e-3), seeds 0, 1, 2. With
`--encoder conv` the encoder is a small CNN on the 8x8 images
(Conv 32 - Conv 64 - MaxPool - Dense 64), where a step's arithmetic, not the
framework's per-step overhead, dominates the time. Reversal factors: DANN
and MDD 0.1, CDAN+E 1.0 on both sides; ours warms the factor up along the
DANN schedule (DomainAdaptationModel's default), ADAPT keeps it constant
(its default). "source only" is a
plain Keras fit on the source; "target supervised" (the ceiling) trains the
same network on a random half of the target and tests on the other half.

Run from the repository root:

    python benchmarks/bench_digits_adaptation.py            # keras-transfer
    /tmp/adaptvenv/bin/python benchmarks/bench_digits_adaptation.py --adapt

With `--adapt` (and when `import adapt` works) the ADAPT 0.4.5 versions of
DANN, CDAN+E, MDD and Deep CORAL run in the same process, interleaved with
ours seed by seed (ours, ADAPT, ours, ADAPT, ...), on the same data and
networks; seconds per epoch are medians over epochs 2..N (the first epoch
traces), and the table prints the time ratio measured in this one run.
Process CPU seconds per epoch (both cores together) are printed too: on a
shared machine they vary less than wall-clock time.
The mapped data is cached in `--cache` so a Python without the data
packages (the ADAPT venv) can run it.
"""

import argparse
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

METHODS = ["dann", "cdan+e", "mdd", "coral", "mmd", "jmmd", "mcc", "entropy"]
ADAPT_METHODS = {"dann": "DANN", "cdan+e": "CDAN", "mdd": "MDD", "coral": "DeepCORAL"}


# ----------------------------------------------------------------------- data


def mnist_to_digits(images):
    """28x28 [0, 1] images -> 8x8 block counts in 0..16 (the optdigits recipe).

    The ink's bounding box is scaled to fit a 32x32 box with its aspect ratio
    kept and centred (as the UCI digits were normalised), then binarised.
    """
    import tensorflow as tf

    out = np.zeros((len(images), 8, 8), "float32")
    for i, image in enumerate(images):
        rows = np.where(image.max(axis=1) > 0.1)[0]
        cols = np.where(image.max(axis=0) > 0.1)[0]
        crop = image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        big = tf.image.resize(
            crop[..., None], (32, 32), method="bilinear", preserve_aspect_ratio=True
        ).numpy()[..., 0]
        canvas = np.zeros((32, 32), "float32")
        top, left = (32 - big.shape[0]) // 2, (32 - big.shape[1]) // 2
        canvas[top : top + big.shape[0], left : left + big.shape[1]] = big
        binary = (canvas > 0.5).astype("float32")
        out[i] = binary.reshape(8, 4, 8, 4).sum(axis=(1, 3))
    return out


def load_data(cache, n_source=5000):
    if cache and os.path.exists(cache):
        d = np.load(cache)
        return d["xs"], d["ys"], d["xt"], d["yt"]
    from keras_transfer import datasets

    (x, y), _ = datasets.load_mnist()
    idx = np.random.default_rng(0).permutation(len(x))[:n_source]
    xs = mnist_to_digits(x[idx]).reshape(-1, 64) / 16.0
    ys = y[idx]
    xt, yt = datasets.load_digits()
    xt = xt.reshape(-1, 64) / 16.0
    xs, xt = xs.astype("float32"), xt.astype("float32")
    if cache:
        np.savez_compressed(cache, xs=xs, ys=ys, xt=xt, yt=yt)
    return xs, ys, xt, yt


# ------------------------------------------------------------------- networks


ENCODER = "mlp"


def encoder():
    if ENCODER == "conv":
        return keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Reshape((8, 8, 1)),
                keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
                keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Flatten(),
                keras.layers.Dense(64, activation="relu"),
            ]
        )
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
        ]
    )


def head():
    return keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(10, activation="softmax")]
    )


class EpochTimer(keras.callbacks.Callback):
    """Wall-clock and process CPU seconds of each epoch."""

    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()
        self._c = time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(
            (time.perf_counter() - self._t, time.process_time() - self._c)
        )

    def per_epoch(self):
        """Medians over epochs 2..N: (wall seconds, CPU seconds)."""
        times = np.array(self.times[1:] if len(self.times) > 1 else self.times)
        return tuple(float(t) for t in np.median(times, axis=0))


def accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0, batch_size=512).argmax(1) == y))


# --------------------------------------------------------------- our methods


def run_ours(method, data, seed, epochs, batch_size):
    import keras_transfer

    xs, ys, xt, yt = data
    keras.utils.set_random_seed(seed)
    timer = EpochTimer()
    if method in ("source only", "target supervised"):
        if method == "source only":
            x_train, y_train, x_test, y_test = xs, ys, xt, yt
        else:
            idx = np.random.default_rng(seed).permutation(len(xt))
            half = len(xt) // 2
            x_train, y_train = xt[idx[:half]], yt[idx[:half]]
            x_test, y_test = xt[idx[half:]], yt[idx[half:]]
        model = keras.Sequential([encoder(), head()])
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0,
                  callbacks=[timer])
        return accuracy(model, x_test, y_test), timer.per_epoch()
    registry = keras_transfer.adaptation.methods
    options = {}
    if method in ("dann", "mdd"):
        options["lambda_"] = 0.1
    if method == "mdd":
        options["margin"] = 4.0
    if method == "cdan+e":  # the table's settings, from before the defaults
        options["lambda_"] = 1.0  # study of bench_adaptation_shifts.py
    if method == "entropy":
        options["diversity_weight"] = 0.0
    if registry.REGISTRY[method].uses_discriminator:
        options["discriminator"] = keras_transfer.layers.DomainDiscriminator((64,))
    weights = {"entropy": 0.1}
    model = keras_transfer.adaptation.DomainAdaptationModel(
        encoder(),
        head(),
        method=[(registry.get(method, **options), weights.get(method, 1.0))],
    )
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    paired = keras_transfer.adaptation.pair_datasets(
        (xs, ys), xt, batch_size=batch_size, seed=seed
    )
    model.fit(paired, epochs=epochs, verbose=0, callbacks=[timer])
    return accuracy(model, xt, yt), timer.per_epoch()


# ---------------------------------------------------------------------- ADAPT


def run_adapt(method, data, seed, epochs, batch_size):
    import adapt.feature_based as fb

    xs, ys, xt, yt = data
    keras.utils.set_random_seed(seed)
    # No Input layer: ADAPT builds the discriminator itself (CDAN: 64 x 10).
    disc = keras.Sequential(
        [keras.layers.Dense(64, activation="relu"),
         keras.layers.Dense(1, activation="sigmoid")]
    )
    common = dict(
        encoder=encoder(), task=head(), Xt=xt, random_state=seed,
        optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy",
    )
    if method == "dann":
        model = fb.DANN(discriminator=disc, lambda_=0.1, **common)
    elif method == "cdan+e":
        model = fb.CDAN(discriminator=disc, entropy=True, **common)
    elif method == "mdd":
        model = fb.MDD(lambda_=0.1, **common)
    else:
        model = fb.DeepCORAL(lambda_=1.0, **common)
    timer = EpochTimer()
    model.fit(xs, np.eye(10, dtype="float32")[ys], epochs=epochs,
              batch_size=batch_size, verbose=0, callbacks=[timer])
    return accuracy(model, xt, yt), timer.per_epoch()


# ----------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--adapt", action="store_true",
                        help="also run ADAPT's versions, interleaved with ours")
    parser.add_argument("--cache", default="/tmp/kt_digits_adaptation_v2.npz")
    parser.add_argument("--encoder", choices=["mlp", "conv"], default="mlp")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    global ENCODER
    ENCODER = args.encoder

    data = load_data(args.cache)
    print(f"source {data[0].shape}, target {data[2].shape}; {args.encoder} "
          f"encoder, {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.seeds} seeds")
    with_adapt = False
    if args.adapt:
        try:
            import adapt  # noqa: F401

            with_adapt = True
        except ImportError:
            print("--adapt: `import adapt` failed; running keras-transfer only")
    methods = ["source only"] + args.methods.split(",") + ["target supervised"]
    results = {}
    for method in methods:
        sides = ["ours"] + (["adapt"] if with_adapt and method in ADAPT_METHODS else [])
        for seed in range(args.seeds):
            for side in sides:  # interleaved: ours, ADAPT, ours, ADAPT, ...
                run = run_ours if side == "ours" else run_adapt
                acc, (sec, cpu) = run(
                    method, data, seed, args.epochs, args.batch_size
                )
                results.setdefault((method, side), []).append((acc, sec, cpu))
                print(f"  {side:5s} {method:18s} seed {seed}: acc {acc:.3f}, "
                      f"{sec:.3f} s/epoch, {cpu:.3f} CPU s/epoch", flush=True)

    print("\n| method | keras-transfer target acc | s/epoch (CPU s) |"
          + (" ADAPT 0.4.5 target acc | s/epoch (CPU s) | ratio ours/ADAPT, "
             "wall (CPU) |" if with_adapt else ""))
    print("|---|---|---|" + ("---|---|---|" if with_adapt else ""))
    for method in methods:
        ours = np.array(results[(method, "ours")])
        o_sec, o_cpu = np.median(ours[:, 1]), np.median(ours[:, 2])
        row = (f"| {method} | {ours[:, 0].mean():.3f} +- {ours[:, 0].std():.3f} | "
               f"{o_sec:.3f} ({o_cpu:.3f}) |")
        if with_adapt:
            theirs = results.get((method, "adapt"))
            if theirs is None:
                row += " | | |"
            else:
                theirs = np.array(theirs)
                t_sec, t_cpu = np.median(theirs[:, 1]), np.median(theirs[:, 2])
                row += (f" {theirs[:, 0].mean():.3f} +- {theirs[:, 0].std():.3f} | "
                        f"{t_sec:.3f} ({t_cpu:.3f}) | {o_sec / t_sec:.2f} "
                        f"({o_cpu / t_cpu:.2f}) |")
        print(row)


if __name__ == "__main__":
    main()
