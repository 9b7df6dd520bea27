"""Domain adaptation defaults across real shifts, and choosing them without labels.

Three real shifts, each with the same MLP (encoder Dense 128 - Dense 64,
ReLU; softmax head), 20 epochs, batch 64, Adam 1e-3:

- `mnist->digits`: 5000 MNIST training images mapped to the form of the
  scikit-learn 8x8 digits (`bench_digits_adaptation.mnist_to_digits`) as
  source, the 1797 sklearn digits as target;
- `digits->mnist`: the reverse: 1397 sklearn digits as source (the other
  400 are its validation set), 5000 MNIST test images mapped to 8x8 as
  target;
- `fashion->noisy`: 5000 Fashion-MNIST training images, 2x2-average-pooled
  to 14x14, as source; 2000 Fashion-MNIST test images pooled likewise plus
  Gaussian noise of standard deviation 0.3 (clipped to [0, 1]) as target.

Every shift has a labelled source validation set (1000 images; 400 digits
for `digits->mnist`) that is never trained on. Target labels are read only
to print the target accuracy (transductive: the unlabelled target set is
also the test set, as in `bench_digits_adaptation.py`); "target supervised"
trains on a random half of the target and tests on the other half.

Stage `grid` (seed 0): every method of `keras_transfer.adaptation.methods`
except AFN at a few settings of its hyperparameters (the reversal factor
`lambda_` of the adversarial methods, MDD's `margin`, the weight of the
other terms), each with the library defaults otherwise (the default
discriminator, `lambda_warmup=True`). After each run the candidate is scored
by `select_model` with DEV, importance-weighted validation, reverse
validation and SND (source validation data and the unlabelled target only),
and the `AdaptationMonitor` warnings of its `fit` are kept.

Choosing the defaults (stage `report`, no target label read): for each
method and shift, the settings are ranked by their DEV score; settings on
which the monitor warned on any shift are set aside (unless all were); the
default is the setting with the best mean rank over the shifts.

Stage `seeds`: seeds 1 and 2 for source only, target supervised and each
method at its chosen setting (the other settings, the previous defaults
among them, have seed 0 only). It runs the methods whose grid is complete,
so it can run beside the grid stage and be run again.

Stage `report` prints: the settings chosen; a table of every method on
every shift with the chosen and with the previous defaults (mean +- std
over the seeds run, their number in brackets) beside source only and
target supervised; and the
selection study over the grid's candidates (Spearman rank correlation of
each criterion's score with the true target accuracy, and regret = best
target accuracy among the candidates minus the chosen one's).

Results go to a JSON-lines file (`--results`), one line per run, so the
stages can run as separate processes (a second process of a stage with
`--reverse` takes its runs from the end) and a stopped run resumes:

    python benchmarks/bench_adaptation_shifts.py --stage grid
    python benchmarks/bench_adaptation_shifts.py --stage seeds
    python benchmarks/bench_adaptation_shifts.py --stage report
"""

import argparse
import json
import os
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

SHIFTS = ["mnist->digits", "digits->mnist", "fashion->noisy"]

#: method -> list of (label, method kwargs, weight). The first entry of each
#: list is the method's previous library default.
GRID = {
    "dann": [("lambda_=1", {"lambda_": 1.0}, 1.0),
             ("lambda_=0.1", {"lambda_": 0.1}, 1.0)],
    "cdan": [("lambda_=1", {"lambda_": 1.0}, 1.0),
             ("lambda_=0.1", {"lambda_": 0.1}, 1.0)],
    "cdan+e": [("lambda_=1", {"lambda_": 1.0}, 1.0),
               ("lambda_=0.1", {"lambda_": 0.1}, 1.0)],
    "mdd": [("lambda_=1 margin=4", {"lambda_": 1.0, "margin": 4.0}, 1.0),
            ("lambda_=0.1 margin=4", {"lambda_": 0.1, "margin": 4.0}, 1.0),
            ("lambda_=0.1 margin=2", {"lambda_": 0.1, "margin": 2.0}, 1.0)],
    "mmd": [("weight=1", {}, 1.0), ("weight=0.3", {}, 0.3)],
    "jmmd": [("weight=1", {}, 1.0), ("weight=0.3", {}, 0.3)],
    "coral": [("weight=1", {}, 1.0), ("weight=0.3", {}, 0.3)],
    "mcc": [("weight=1", {}, 1.0), ("weight=0.3", {}, 0.3)],
    "entropy": [("weight=1", {"diversity_weight": 0.0}, 1.0),
                ("weight=0.1", {"diversity_weight": 0.0}, 0.1),
                ("weight=0.01", {"diversity_weight": 0.0}, 0.01),
                ("weight=1 diversity=1", {"diversity_weight": 1.0}, 1.0),
                ("weight=0.3 diversity=1", {"diversity_weight": 1.0}, 0.3),
                ("weight=0.1 diversity=1", {"diversity_weight": 1.0}, 0.1)],
}
BASELINES = ["source only", "target supervised"]
CRITERIA = ["dev", "iwv", "reverse_validation", "snd"]


# ----------------------------------------------------------------------- data


def load_shifts(cache):
    if cache and os.path.exists(cache):
        d = np.load(cache)
        return {
            s: tuple(d[f"{s}/{k}"] for k in ("xs", "ys", "xv", "yv", "xt", "yt"))
            for s in SHIFTS
        }
    from benchmarks.bench_digits_adaptation import mnist_to_digits
    from keras_transfer import datasets

    shifts = {}
    (x, y), (x_test, y_test) = datasets.load_mnist()
    order = np.random.default_rng(0).permutation(len(x))
    src, val = order[:5000], order[5000:6000]
    xd, yd = datasets.load_digits()
    xd = xd.reshape(-1, 64) / 16.0
    shifts["mnist->digits"] = (
        mnist_to_digits(x[src]).reshape(-1, 64) / 16.0, y[src],
        mnist_to_digits(x[val]).reshape(-1, 64) / 16.0, y[val],
        xd, yd,
    )
    d_order = np.random.default_rng(0).permutation(len(xd))
    d_src, d_val = d_order[:1397], d_order[1397:]
    shifts["digits->mnist"] = (
        xd[d_src], yd[d_src], xd[d_val], yd[d_val],
        mnist_to_digits(x_test[:5000]).reshape(-1, 64) / 16.0, y_test[:5000],
    )
    (fx, fy), (fx_test, fy_test) = datasets.load_fashion_mnist()

    def pool(a):
        a = a.astype("float32") / 255.0
        return a.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(-1, 196)

    f_order = np.random.default_rng(0).permutation(len(fx))
    f_src, f_val = f_order[:5000], f_order[5000:6000]
    noisy = pool(fx_test[:2000])
    noisy = np.clip(
        noisy + np.random.default_rng(0).normal(0.0, 0.3, noisy.shape), 0.0, 1.0
    )
    shifts["fashion->noisy"] = (
        pool(fx[f_src]), fy[f_src], pool(fx[f_val]), fy[f_val],
        noisy, fy_test[:2000],
    )
    shifts = {
        s: tuple(
            a.astype("float32") if i % 2 == 0 else np.asarray(a).astype("int64")
            for i, a in enumerate(arrays)
        )
        for s, arrays in shifts.items()
    }
    if cache:
        np.savez_compressed(
            cache,
            **{
                f"{s}/{k}": a
                for s, arrays in shifts.items()
                for k, a in zip(("xs", "ys", "xv", "yv", "xt", "yt"), arrays)
            },
        )
    return shifts


# ------------------------------------------------------------------- networks


def encoder(dim):
    return keras.Sequential(
        [
            keras.Input((dim,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
        ]
    )


def head():
    return keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(10, activation="softmax")]
    )


def accuracy(model, x, y):
    return float(np.mean(model.predict(x, verbose=0, batch_size=512).argmax(1) == y))


def scores(features, classifier, xv, yv, xt):
    from keras_transfer.adaptation import select_model

    return {
        c: float(
            select_model(
                [(features, classifier)], source_validation=(xv, yv), target_x=xt,
                criterion=c,
            )[0]
        )
        for c in CRITERIA
    }


def run(shift, data, method, setting, seed, epochs, batch_size):
    """One training run; returns its record (one JSON line)."""
    import keras_transfer

    xs, ys, xv, yv, xt, yt = data
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    record = {"shift": shift, "method": method, "setting": setting, "seed": seed}
    if method in BASELINES:
        if method == "source only":
            x_train, y_train, x_test, y_test = xs, ys, xt, yt
        else:
            idx = np.random.default_rng(seed).permutation(len(xt))
            half = len(xt) // 2
            x_train, y_train = xt[idx[:half]], yt[idx[:half]]
            x_test, y_test = xt[idx[half:]], yt[idx[half:]]
        features, classifier = encoder(xs.shape[1]), head()
        model = keras.Sequential([features, classifier])
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0)
        record["acc"] = accuracy(model, x_test, y_test)
        record["warned"] = False
    else:
        kwargs, weight = next((k, w) for s, k, w in GRID[method] if s == setting)
        features, classifier = encoder(xs.shape[1]), head()
        model = keras_transfer.adaptation.DomainAdaptationModel(
            features,
            classifier,
            method=[(keras_transfer.adaptation.methods.get(method, **kwargs), weight)],
        )
        model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
        paired = keras_transfer.adaptation.pair_datasets(
            (xs, ys), xt, batch_size=batch_size, seed=seed
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            history = model.fit(paired, epochs=epochs, verbose=0)
        record["warned"] = any(
            type(w.message).__name__ == "AdaptationWarning" for w in caught
        )
        record["target_entropy"] = float(history.history["target_entropy"][-1])
        record["acc"] = accuracy(model.inference_model(), xt, yt)
    record["seconds"] = time.perf_counter() - start
    if method != "target supervised" and seed == 0:  # the grid's candidates
        record.update(scores(features, classifier, xv, yv, xt))
    return record


# ---------------------------------------------------------------------- stages


def read_results(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    # Two processes can both finish the same run: keep the first.
    return list({key(r): r for r in reversed(records)}.values())[::-1]


def key(r):
    return (r["shift"], r["method"], r["setting"], r["seed"])


def execute(jobs, shifts, args):
    done = {key(r) for r in read_results(args.results)}
    todo = [j for j in jobs if j not in done]
    print(f"{len(todo)} runs to do ({len(jobs) - len(todo)} already in "
          f"{args.results})", flush=True)
    if args.reverse:
        todo = todo[::-1]
    for job in todo:
        # Another process may share the file (`--reverse` runs from the end).
        if job in {key(r) for r in read_results(args.results)}:
            continue
        shift, method, setting, seed = job
        record = run(shift, shifts[shift], method, setting, seed, args.epochs,
                     args.batch_size)
        with open(args.results, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"  {shift:15s} {method:17s} {setting:21s} seed {seed}: "
              f"acc {record['acc']:.3f} ({record['seconds']:.0f} s)"
              + (" WARNED" if record["warned"] else ""), flush=True)


def grid_jobs(shifts):
    jobs = [(s, b, "", 0) for s in shifts for b in BASELINES]
    for method, settings in GRID.items():
        for setting, _, _ in settings:
            jobs += [(s, method, setting, 0) for s in shifts]
    return jobs


def choose(results, shifts, criterion="dev"):
    """method -> chosen setting, from the grid's seed-0 runs, no target label."""
    chosen = {}
    for method, settings in GRID.items():
        labels = [s for s, _, _ in settings]
        rows = {
            (r["shift"], r["setting"]): r
            for r in results
            if r["method"] == method and r["seed"] == 0
        }
        if any((s, lab) not in rows for s in shifts for lab in labels):
            continue
        ranks = np.zeros(len(labels))
        for shift in shifts:
            values = np.array([rows[(shift, lab)][criterion] for lab in labels])
            ranks += np.argsort(np.argsort(-values))  # 0 = best score
        warned = np.array(
            [any(rows[(s, lab)]["warned"] for s in shifts) for lab in labels]
        )
        if not warned.all():
            ranks[warned] = np.inf
        chosen[method] = labels[int(np.argmin(ranks))]
    return chosen


def seeds_jobs(results, shifts, n_seeds):
    chosen = choose(results, shifts)
    jobs = []
    for seed in range(1, n_seeds):
        jobs += [(s, b, "", seed) for s in shifts for b in BASELINES]
        for method in GRID:
            if method in chosen:
                jobs += [(s, method, chosen[method], seed) for s in shifts]
    return jobs


# ---------------------------------------------------------------------- report


def spearman(a, b):
    def ranks(v):
        v = np.asarray(v, "float64")
        r = np.empty(len(v))
        r[np.argsort(v, kind="stable")] = np.arange(len(v))
        for value in np.unique(v):
            r[v == value] = r[v == value].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def report(results, shifts):
    chosen = choose(results, shifts)
    print("\nDefaults chosen by DEV rank over the shifts (monitor-warned settings "
          "set aside); previous default first:")
    for method, settings in GRID.items():
        print(f"  {method}: {chosen.get(method, '(grid incomplete)')} "
              f"(previous: {settings[0][0]})")

    def cell(method, setting):
        accs = [
            [r["acc"] for r in results
             if r["shift"] == s and r["method"] == method and r["setting"] == setting]
            for s in shifts
        ]
        return accs

    def fmt(values):
        if not values:
            return ""
        v = np.array(values)
        return f"{v.mean():.3f} ± {v.std():.3f} ({len(v)})"

    print("\nTarget accuracy, mean ± std over seeds (number of seeds)")
    print("| method | setting | " + " | ".join(shifts) + " |")
    print("|---|---|" + "---|" * len(shifts))
    print("| source only | | " + " | ".join(fmt(a) for a in cell("source only", ""))
          + " |")
    so = [np.mean(a) if a else np.nan for a in cell("source only", "")]
    for method, settings in GRID.items():
        labels = list(dict.fromkeys([chosen.get(method), settings[0][0]]))
        for label in labels:
            if label is None:
                continue
            tag = "chosen" if label == chosen.get(method) else "previous"
            accs = cell(method, label)
            cells = []
            for a, base in zip(accs, so):
                mark = "" if not a or np.mean(a) >= base - 0.005 else " (below)"
                cells.append(fmt(a) + mark)
            print(f"| {method} | {label} ({tag}) | " + " | ".join(cells) + " |")
    print("| target supervised | | "
          + " | ".join(fmt(a) for a in cell("target supervised", "")) + " |")

    print("\nSelection over the grid's candidates (seed 0; all settings of all "
          "methods and source only): Spearman rho with target accuracy / regret")
    print("| criterion | " + " | ".join(shifts) + " | mean |")
    print("|---|" + "---|" * (len(shifts) + 1))
    for criterion in CRITERIA:
        cells, rhos, regrets = [], [], []
        for shift in shifts:
            rows = [r for r in results if r["shift"] == shift and r["seed"] == 0
                    and r["method"] != "target supervised"]
            target = np.array([r["acc"] for r in rows])
            score = np.array([r[criterion] for r in rows])
            rho = spearman(score, target)
            regret = target.max() - target[int(np.argmax(score))]
            rhos.append(rho)
            regrets.append(regret)
            cells.append(f"{rho:+.2f} / {regret:.3f}")
        print(f"| {criterion} | " + " | ".join(cells)
              + f" | {np.nanmean(rhos):+.2f} / {np.mean(regrets):.3f} |")
    for shift in shifts:
        rows = [r for r in results if r["shift"] == shift and r["seed"] == 0
                and r["method"] != "target supervised"]
        best = max(rows, key=lambda r: r["acc"])
        print(f"  {shift}: {len(rows)} candidates, best {best['method']} "
              f"{best['setting']} {best['acc']:.3f}")
    total = sum(r["seconds"] for r in results)
    print(f"\n{len(results)} runs, {total:.0f} s of training and scoring")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", choices=["grid", "seeds", "report"],
                        default="report")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shifts", default=",".join(SHIFTS))
    parser.add_argument("--methods", default=",".join(GRID),
                        help="limit the grid stage to these methods")
    parser.add_argument("--reverse", action="store_true",
                        help="take the runs from the end (a second process)")
    parser.add_argument("--results", default="/tmp/kt_adaptation_shifts.jsonl")
    parser.add_argument("--cache", default="/tmp/kt_adaptation_shifts_v1.npz")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    shift_names = args.shifts.split(",")
    shifts = load_shifts(args.cache)
    shifts = {s: shifts[s] for s in shift_names}
    for s, d in shifts.items():
        print(f"{s}: source {d[0].shape}, validation {d[2].shape}, "
              f"target {d[4].shape}", flush=True)
    if args.stage == "grid":
        methods = args.methods.split(",")
        jobs = [j for j in grid_jobs(shifts)
                if j[1] in BASELINES or j[1] in methods]
        execute(jobs, shifts, args)
    elif args.stage == "seeds":
        execute(seeds_jobs(read_results(args.results), shifts, args.seeds),
                shifts, args)
    report(read_results(args.results), list(shifts))


if __name__ == "__main__":
    main()
