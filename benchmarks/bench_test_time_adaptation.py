"""Test-time and source-free adaptation on real shifts, and choosing without labels.

Source: MNIST. A BatchNorm MLP (Flatten - Dense 256 - BN - ReLU - Dense 128
- BN - ReLU as the features, Dense 10 softmax as the classifier) is trained
on 5000 MNIST training images (3 epochs, batch 64, Adam 1e-3). Targets,
all unlabelled during adaptation and scored on the same images (the
transductive setting of TENT and SHOT):

- `noise`: the first 2000 MNIST test images plus Gaussian noise, standard
  deviation 0.5, clipped to [0, 1];
- `invert`: the same 2000 images with the contrast inverted, `1 - x`;
- `rotate`: the same images rotated by 45 degrees (bilinear, zero fill);
- `blur`: the same images under a Gaussian blur of standard deviation 1.5
  pixels;
- `digits`: MNIST -> scikit-learn 8x8 digits (the mapping of
  `bench_digits_adaptation.py`: 5000 MNIST training images reduced to 8x8
  block counts as source, all 1797 digits as target), with the same MLP
  on 64 inputs.

Methods, each with its defaults: no adaptation; `adabn`; `tent` (1 epoch,
batch 128, Adam 1e-3); `shot` (10 epochs, batch 64, SGD 1e-3 with
Nesterov momentum 0.9, pseudo-label weight 0.3). Mean and spread (half the
range) over seeds 0, 1, 2 (source training and adaptation order; the
corrupted images are fixed).

Selection study (seed 0): on each shift, 12 candidates: the unadapted
model, AdaBN, TENT with Adam at learning rates 1e-3, 1e-2 and 5e-2 for 1
epoch and 5e-2 for 5 epochs, SHOT with SGD 1e-2 with its weights kept
every 2 epochs by `ModelCheckpoints` (2, 4, ..., 10), and SHOT's information
maximization without diversity and pseudo-labels (entropy only, a recipe
that collapses). Each criterion of `select_model` (DEV, importance-weighted
validation, reverse validation, SND) scores every candidate with 1000
labelled MNIST validation images (mapped likewise for `digits`) and the
unlabelled target; beside them, plain source validation accuracy. For
each criterion: Spearman rank correlation of its scores with the true
target accuracy, and regret (the best candidate's target accuracy minus
the chosen one's), per shift and averaged.

Run from the repository root (the table and the study can run as two
processes, `--no-selection` and `--selection-only`):

    python benchmarks/bench_test_time_adaptation.py
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.bench_digits_adaptation import mnist_to_digits  # noqa: E402
from keras_transfer.adaptation import (  # noqa: E402
    DEV,
    SND,
    ModelCheckpoints,
    ReverseValidation,
    adabn,
    select_model,
    shot,
    tent,
)

CORRUPTIONS = ["noise", "invert", "rotate", "blur"]
SHIFTS = CORRUPTIONS + ["digits"]
METHODS = ["none", "adabn", "tent", "shot"]


# ----------------------------------------------------------------------- data


def corrupt(images, kind, seed=0):
    """Corrupted copies of 28x28 images in [0, 1] (see the module docstring)."""
    from scipy import ndimage

    if kind == "noise":
        rng = np.random.default_rng(seed)
        return np.clip(images + rng.normal(0.0, 0.5, images.shape), 0.0, 1.0)
    if kind == "invert":
        return 1.0 - images
    if kind == "rotate":
        return np.stack(
            [ndimage.rotate(im, 45, reshape=False, order=1) for im in images]
        ).clip(0.0, 1.0)
    if kind == "blur":
        return np.stack([ndimage.gaussian_filter(im, 1.5) for im in images])
    raise ValueError(kind)


def load_shifts(n_source, n_target, n_validation):
    from keras_transfer import datasets

    (x, y), (x_test, y_test) = datasets.load_mnist()
    x, x_test = x.astype("float32"), x_test.astype("float32")
    if x.max() > 1.5:
        x, x_test = x / 255.0, x_test / 255.0
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    src, val = order[:n_source], order[n_source : n_source + n_validation]
    shifts = {}
    mnist = (x[src], y[src], x[val], y[val])
    for kind in CORRUPTIONS:
        xt = corrupt(x_test[:n_target], kind).astype("float32")
        shifts[kind] = (*mnist, xt, y_test[:n_target])
    src_d = order[:5000]
    xs = (mnist_to_digits(x[src_d]) / 16.0).reshape(-1, 8, 8).astype("float32")
    xv = (mnist_to_digits(x[val]) / 16.0).reshape(-1, 8, 8).astype("float32")
    xt, yt = datasets.load_digits()
    xt = (xt / 16.0).astype("float32")
    shifts["digits"] = (xs, y[src_d], xv, y[val], xt, yt)
    return shifts


# -------------------------------------------------------------------- network


def build(input_shape, seed):
    keras.utils.set_random_seed(seed)
    features = keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(256),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Dense(128),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
        ],
        name="features",
    )
    classifier = keras.Sequential(
        [keras.Input((128,)), keras.layers.Dense(10, activation="softmax")],
        name="classifier",
    )
    return features, classifier


def train_source(data, seed):
    xs, ys = data[0], data[1]
    features, classifier = build(xs.shape[1:], seed)
    model = keras.Sequential([features, classifier])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    model.fit(xs, ys, epochs=3, batch_size=64, verbose=0)
    return features, classifier, model


def accuracy(model, x, y):
    return float(
        np.mean(np.argmax(model.predict(x, verbose=0, batch_size=512), -1) == y)
    )


def adapt(method, features, classifier, model, xt, seed):
    if method == "none":
        return model
    if method == "adabn":
        return adabn(model, xt)
    if method == "tent":
        return tent(model, xt, seed=seed)
    if method == "shot":
        return shot(features, classifier, xt, seed=seed)
    raise ValueError(method)


# ------------------------------------------------------------------ selection


def spearman(a, b):
    def ranks(v):
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        # average ties
        for value in np.unique(v):
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    ra, rb = ranks(np.asarray(a)), ranks(np.asarray(b))
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def candidates_for(features, classifier, model, xt, seed=0):
    """(name, (features, classifier)) pairs: copies, built one by one."""

    def pair(m):
        return (m.layers[0], m.layers[1])

    yield "none", pair(model)
    yield "adabn", pair(adabn(model, xt))
    for lr, epochs in ((1e-3, 1), (1e-2, 1), (5e-2, 1), (5e-2, 5)):
        adapted = tent(
            model, xt, epochs=epochs, optimizer=keras.optimizers.Adam(lr), seed=seed
        )
        yield f"tent lr={lr:g} ep={epochs}", pair(adapted)
    f = keras.models.clone_model(features)
    f.set_weights(features.get_weights())
    c = keras.models.clone_model(classifier)
    c.set_weights(classifier.get_weights())
    checkpoints = ModelCheckpoints(every=2, candidate=lambda m: (f, c))
    shot(
        f,
        c,
        xt,
        epochs=10,
        optimizer=keras.optimizers.SGD(1e-2, momentum=0.9, nesterov=True),
        copy=False,
        seed=seed,
        callbacks=[checkpoints],
    )
    for epoch, candidate in zip(checkpoints.epochs, checkpoints):
        yield f"shot lr=0.01 ep={epoch}", candidate
    adapted = shot(
        features,
        classifier,
        xt,
        epochs=5,
        diversity_weight=0.0,
        pseudo_label_weight=0.0,
        optimizer=keras.optimizers.SGD(1e-2, momentum=0.9, nesterov=True),
        seed=seed,
    )
    yield "entropy only", pair(adapted)


CRITERIA = {
    "DEV": DEV(),
    "IWV": DEV(control_variate=False),
    "reverse validation": ReverseValidation(),
    "SND": SND(),
}


def selection_study(shifts, seed=0):
    results = {}
    for shift, data in shifts.items():
        xs, ys, xv, yv, xt, yt = data
        features, classifier, model = train_source(data, seed)
        rows = []
        for name, (f, c) in candidates_for(features, classifier, model, xt, seed):
            whole = keras.Sequential([f, c])
            row = {
                "name": name,
                "target": accuracy(whole, xt, yt),
                "source accuracy": accuracy(whole, xv, yv),
            }
            for cname, criterion in CRITERIA.items():
                row[cname] = float(
                    select_model(
                        [(f, c)],
                        source_validation=(xv, yv),
                        target_x=xt,
                        criterion=criterion,
                    )[0]
                )
            rows.append(row)
            print(
                f"  {shift:7s} {name:22s} target {row['target']:.3f} "
                + " ".join(
                    f"{k} {row[k]:+.3f}" for k in ["source accuracy", *CRITERIA]
                ),
                flush=True,
            )
        results[shift] = rows
    return results


# ----------------------------------------------------------------------- main


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-source", type=int, default=5000)
    parser.add_argument("--n-target", type=int, default=2000)
    parser.add_argument("--n-validation", type=int, default=1000)
    parser.add_argument("--shifts", default=",".join(SHIFTS))
    parser.add_argument("--no-selection", action="store_true")
    parser.add_argument("--selection-only", action="store_true")
    args = parser.parse_args(argv)
    start = time.process_time()
    shifts = load_shifts(args.n_source, args.n_target, args.n_validation)
    shifts = {k: shifts[k] for k in args.shifts.split(",")}

    table = {(s, m): [] for s in shifts for m in METHODS}
    for seed in range(0 if args.selection_only else args.seeds):
        for shift, data in shifts.items():
            features, classifier, model = train_source(data, seed)
            xt, yt = data[4], data[5]
            for method in METHODS:
                adapted = adapt(method, features, classifier, model, xt, seed)
                table[(shift, method)].append(accuracy(adapted, xt, yt))
            print(
                f"seed {seed} {shift:7s} "
                f"source val {accuracy(model, data[2], data[3]):.3f} "
                + " ".join(f"{m} {table[(shift, m)][-1]:.3f}" for m in METHODS),
                flush=True,
            )

    if not args.selection_only:
        print_table(table, shifts, args.seeds)
    if not args.no_selection:
        print_selection(selection_study(shifts), shifts)
    print(f"\nprocess CPU seconds: {time.process_time() - start:.0f}")


def print_table(table, shifts, seeds):
    print("\nTarget accuracy, mean +- spread (half range) over", seeds, "seeds")
    print("| shift | " + " | ".join(METHODS) + " |")
    print("|---|" + "---|" * len(METHODS))
    for shift in shifts:
        cells = []
        for method in METHODS:
            v = np.array(table[(shift, method)])
            cells.append(f"{v.mean():.3f} ± {(v.max() - v.min()) / 2:.3f}")
        print(f"| {shift} | " + " | ".join(cells) + " |")
    means = [np.mean([np.mean(table[(s, m)]) for s in shifts]) for m in METHODS]
    print("| mean | " + " | ".join(f"{v:.3f}" for v in means) + " |")


def print_selection(results, shifts):
    names = ["source accuracy", *CRITERIA]
    print("\nSpearman rank correlation with target accuracy / regret")
    print("| criterion | " + " | ".join(shifts) + " | mean |")
    print("|---|" + "---|" * (len(shifts) + 1))
    for cname in names:
        cells, rhos, regrets = [], [], []
        for shift in shifts:
            rows = results[shift]
            target = np.array([r["target"] for r in rows])
            scores = np.array([r[cname] for r in rows])
            rho = spearman(scores, target)
            regret = target.max() - target[int(np.argmax(scores))]
            rhos.append(rho)
            regrets.append(regret)
            cells.append(f"{rho:+.2f} / {regret:.3f}")
        print(
            f"| {cname} | "
            + " | ".join(cells)
            + f" | {np.nanmean(rhos):+.2f} / {np.mean(regrets):.3f} |"
        )
    print(
        "candidates per shift:",
        len(next(iter(results.values()))),
        "; oracle (best) target accuracy:",
        " ".join(
            f"{s} {max(r['target'] for r in rows):.3f}" for s, rows in results.items()
        ),
    )


if __name__ == "__main__":
    main()
