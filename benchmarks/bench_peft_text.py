"""LoRA and DoRA against full fine-tuning on a real text encoder.

Task: BBC News (5 classes) with 20 labelled texts per class (a new random
draw per seed), scored on 50 held-out texts per class (the same for every
run of a seed), and on 10 validation texts per class drawn after them from
the texts neither set took (the column to choose settings on, such as
`--alpha`). Encoder: the shipped all-MiniLM-L6-v2 (keras-hub BERT,
22.7M parameters), sequences cut at 64 tokens, mean pooling, a dense
softmax head. AdamW, batch 16, the same epochs for every row.

Rows (choose with --rows, comma separated):
  head     frozen encoder, the head alone trains (lr 3e-3).
  full     everything trains (lr 1e-4).
  lora4, lora8, lora16   `enable_lora(backbone, rank=r)` with its default
           targets (query/value and feed-forward projections), lr 1e-3.
  dora8    the same with `dora=True`.
  qlora8   the encoder quantized with `backbone.quantize("int8")`, then LoRA
           r=8 (float adapters on a frozen int8 base).
  lora8qv  LoRA r=8 on the attention query and value projections only
           (`targets="query|value"`), the feed-forward layers left frozen.
  lora8m   LoRA r=8 on the default targets with `factoring="matrix"`: each
           attention `EinsumDense` kernel factored as its input x output
           matrix (384 x 384) instead of over its last axis.
  lora8ma  `factoring="matrix"` at r=8 on every projection of the blocks:
           query, key, value, attention output and both feed-forward layers.

`--alpha A` sets LoRA's alpha for the adapter rows (the update is scaled
by alpha / rank; the default is alpha = rank). `--lr R` sets the adapter
rows' learning rate (default 1e-3); like alpha, choose it on the
validation column. `--lora-plus R` trains each adapter's `B` matrix at R
times the rate of its `A` matrix (LoRA+, Hayou et al. 2024), through
`DiscriminativeLR(multipliers={"lora_kernel_b": R})`. `--bitfit` passes
`bitfit=True` to `enable_lora` in the adapter rows: the encoder's biases and
normalization scales train too (BitFit, Ben Zaken et al. 2022).
`--probe-epochs N` trains the head alone first, for N epochs on the frozen
encoder's pooled outputs computed once (AdamW at the head row's rate; the
adapters start at zero, so these are the base encoder's features), before
the row's own fit: the head-first start of LP-FT (Kumar et al. 2022).
The environment variables `BENCH_PEFT_EPOCHS` (default 5) and
`BENCH_PEFT_VAL_PER_CLASS` (default 10; the test texts stay the same) set
the epochs and the size of the validation split.
`--schedule one_cycle` runs every row's rate (its peak) through
`keras_transfer.schedules.OneCycle` over the fit's steps instead of keeping
it constant (`constant`, the default).

Each row runs in its own process, so that the peak memory (ru_maxrss) is the
row's own. Columns: test accuracy (mean and spread over seeds), trainable
parameters (and their share of all parameters), median training step time,
peak resident memory of the process, memory added by training (peak minus
the resident memory once the model is built), and the size of the file that
`save_adapters` writes (adapters and head; for `full` the bytes of all
its weights, for `head` the head's `.weights.h5`). Memory added by training
is taken from the first seed of a row (a fresh process).

Run: nice -n 10 python benchmarks/bench_peft_text.py --seeds 0,1,2
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The repository first on the path, so the script measures this checkout.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROWS = (
    "full", "lora8", "head", "lora4", "lora16", "dora8", "qlora8", "lora8qv",
    "lora8m", "lora8ma",
)
PER_CLASS = 20
TEST_PER_CLASS = 50
VAL_PER_CLASS = int(os.environ.get("BENCH_PEFT_VAL_PER_CLASS", "10"))
SEQUENCE_LENGTH = 64
BATCH = 16
EPOCHS = int(os.environ.get("BENCH_PEFT_EPOCHS", "5"))
LEARNING_RATES = {"head": 3e-3, "full": 1e-4}
PEFT_LEARNING_RATE = 1e-3


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_row(
    row, seed, alpha=None, peft_lr=PEFT_LEARNING_RATE, lora_plus=None, bitfit=False,
    probe_epochs=0, schedule="constant",
):
    """One row, one seed, in this process: returns a dict of figures."""
    import keras
    import keras_hub
    import numpy as np

    import keras_transfer
    from keras_transfer.backbones import Backbone, add_head
    from keras_transfer.optimizers import DiscriminativeLR
    from keras_transfer.peft import enable_lora, save_adapters

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    texts, labels, classes = keras_transfer.datasets.load_bbc_news()
    rng = np.random.default_rng(seed)
    train = keras_transfer.datasets.few_shot_indices(labels, PER_CLASS, rng=rng)
    rest = np.setdiff1d(np.arange(len(labels)), train)
    test = rest[
        keras_transfer.datasets.few_shot_indices(labels[rest], TEST_PER_CLASS, rng=rng)
    ]
    # Validation texts, drawn after the test texts (so the test draw is the
    # one earlier runs of this script used) from what neither set took.
    rest = np.setdiff1d(rest, test)
    val = rest[
        keras_transfer.datasets.few_shot_indices(labels[rest], VAL_PER_CLASS, rng=rng)
    ]

    preset = keras_transfer.datasets.minilm_preset_dir()
    tokenizer = keras_hub.models.BertTokenizer(
        vocabulary=os.path.join(preset, "vocab.txt"), lowercase=True
    )
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=SEQUENCE_LENGTH
    )

    def tokens(indices):
        out = preprocessor(np.array([texts[i] for i in indices]))
        return {k: np.asarray(v) for k, v in out.items()}

    x_train, y_train = tokens(train), labels[train]
    x_test, y_test = tokens(test), labels[test]
    x_val, y_val = tokens(val), labels[val]

    backbone = Backbone.from_preset(preset)
    if row == "qlora8":
        backbone.quantize("int8")
    ranks = {"lora4": 4, "lora8": 8, "lora16": 16, "dora8": 8, "qlora8": 8}
    rank = {**ranks, "lora8qv": 8, "lora8m": 8, "lora8ma": 8}.get(row)
    targets = {
        "lora8qv": "query|value",
        "lora8ma": "query|key|value|attention_output|feedforward",
    }.get(row)
    factoring = "matrix" if row in ("lora8m", "lora8ma") else "last_axis"
    if rank is not None:
        enable_lora(
            backbone, rank=rank, alpha=alpha, targets=targets,
            dora=row == "dora8", factoring=factoring, bitfit=bitfit,
        )
    elif row == "head":
        backbone.trainable = False
    model = add_head(backbone, num_classes=len(classes), preprocessing=None)
    probe_s = 0.0
    if probe_epochs:
        # The head alone, on the pooled features of the frozen encoder.
        start = time.perf_counter()
        head = model.get_layer("head")
        features = keras.Model(model.inputs, model.layers[-2].output).predict(
            x_train, batch_size=64, verbose=0
        )
        probe = keras.Sequential([keras.Input(features.shape[1:]), head])
        probe.compile(
            optimizer=keras.optimizers.AdamW(LEARNING_RATES["head"], weight_decay=0.01),
            loss="sparse_categorical_crossentropy",
        )
        probe.fit(features, y_train, batch_size=BATCH, epochs=probe_epochs, verbose=0)
        probe_s = time.perf_counter() - start
    lr = LEARNING_RATES.get(row, peft_lr)
    rate = lr
    if schedule == "one_cycle":
        steps = -(-len(y_train) // BATCH) * EPOCHS
        rate = keras_transfer.schedules.OneCycle(lr, total_steps=steps)
    optimizer = keras.optimizers.AdamW(rate, weight_decay=0.01)
    if lora_plus is not None and rank is not None:
        optimizer = DiscriminativeLR(
            optimizer, multipliers={"lora_kernel_b": lora_plus}
        )
    model.compile(
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    total = sum(int(np.prod(v.shape)) for v in model.weights)
    built_mb = _rss_mb()

    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)

    model.fit(
        x_train, y_train, batch_size=BATCH, epochs=EPOCHS, verbose=0,
        callbacks=[Timer()],
    )
    peak_mb = _peak_mb()
    _, accuracy = model.evaluate(x_test, y_test, batch_size=64, verbose=0)
    _, val_accuracy = model.evaluate(x_val, y_val, batch_size=64, verbose=0)

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "weights")
        if rank is not None:
            size = save_adapters(model, path + ".npz")
        elif row == "full":
            # The weights themselves (a `.weights.h5` of a compiled model
            # also holds the optimizer's state).
            size = sum(keras.ops.convert_to_numpy(v).nbytes for v in model.weights)
        else:
            model.get_layer("head").save_weights(path + ".weights.h5")
            size = os.path.getsize(path + ".weights.h5")
    steady = times[2:] if len(times) > 4 else times
    return {
        "row": row,
        "seed": seed,
        "alpha": alpha,
        "lr": lr,
        "lora_plus": lora_plus if rank is not None else None,
        "bitfit": bool(bitfit and rank is not None),
        "probe_epochs": probe_epochs,
        "probe_s": probe_s,
        "schedule": schedule,
        "accuracy": float(accuracy),
        "val_accuracy": float(val_accuracy),
        "trainable": trainable,
        "total": total,
        "step_s": float(np.median(steady)),
        "peak_mb": peak_mb,
        "train_mb": peak_mb - built_mb,
        "file_bytes": int(size),
    }


def _child(row, seeds, alpha, peft_lr, lora_plus, bitfit, probe_epochs, schedule):
    # One line per seed, as soon as it is done: a run stopped early keeps
    # the seeds it finished.
    for seed in seeds:
        result = run_row(
            row, seed, alpha, peft_lr, lora_plus, bitfit, probe_epochs, schedule
        )
        print("RESULT " + json.dumps([result]), flush=True)


def _table(results):
    import numpy as np

    full = [r for r in results if r["row"] == "full"]
    full_step = np.median([r["step_s"] for r in full]) if full else None
    full_mb = full[0]["train_mb"] if full else None
    lines = [
        "| row | accuracy (mean ± sd) | validation | trainable params | step (s) | "
        "vs full | peak RSS (MB) | training memory (MB) | file |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in ROWS:
        rs = [r for r in results if r["row"] == row]
        if not rs:
            continue
        acc = np.array([r["accuracy"] for r in rs])
        val = np.mean([r["val_accuracy"] for r in rs])
        step = float(np.median([r["step_s"] for r in rs]))
        train_mb = rs[0]["train_mb"]  # the first seed: a fresh process
        speed = f"{full_step / step:.2f}x" if full_step else "-"
        lines.append(
            f"| {row} | {acc.mean():.3f} ± {acc.std():.3f} (n={len(rs)}) | "
            f"{val:.3f} | "
            f"{rs[0]['trainable']:,} ({100 * rs[0]['trainable'] / rs[0]['total']:.2f}%)"
            f" | {step:.3f} | {speed} | {max(r['peak_mb'] for r in rs):.0f} | "
            f"{train_mb:.0f}"
            + (f" ({100 * (1 - train_mb / full_mb):+.0f}% vs full)"
               if full_mb and row != "full" else "")
            + f" | {rs[0]['file_bytes'] / 1e6:.2f} MB |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--alpha", type=float, default=None,
        help="LoRA alpha of the adapter rows (default: alpha = rank)",
    )
    parser.add_argument(
        "--lr", type=float, default=PEFT_LEARNING_RATE,
        help="learning rate of the adapter rows (default: %(default)s)",
    )
    parser.add_argument(
        "--lora-plus", type=float, default=None,
        help="rate of the adapters' B matrices over their A matrices (LoRA+)",
    )
    parser.add_argument(
        "--bitfit", action="store_true",
        help="also train the encoder's biases and normalization scales",
    )
    parser.add_argument(
        "--probe-epochs", type=int, default=0,
        help="epochs of the head alone on cached features before the fit",
    )
    parser.add_argument(
        "--schedule", default="constant", choices=("constant", "one_cycle"),
        help="learning-rate schedule of every row (default: %(default)s)",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help="write the raw results as JSON")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.child:
        _child(
            args.child, seeds, args.alpha, args.lr, args.lora_plus, args.bitfit,
            args.probe_epochs, args.schedule,
        )
        return
    results = []
    for row in args.rows.split(","):
        start = time.time()
        done = subprocess.run(
            [sys.executable, __file__, "--child", row, "--seeds", args.seeds]
            + ([] if args.alpha is None else ["--alpha", str(args.alpha)])
            + ["--lr", str(args.lr)]
            + ([] if args.lora_plus is None else ["--lora-plus", str(args.lora_plus)])
            + (["--bitfit"] if args.bitfit else [])
            + ["--probe-epochs", str(args.probe_epochs)]
            + ["--schedule", args.schedule],
            capture_output=True, text=True,
        )
        lines = done.stdout.splitlines()
        found = [line for line in lines if line.startswith("RESULT ")]
        if not found:
            print(f"{row}: failed\n{done.stderr[-3000:]}", flush=True)
            continue
        rows = [r for line in found for r in json.loads(line[len("RESULT "):])]
        results.extend(rows)
        print(
            f"{row}: test " + ", ".join(f"{r['accuracy']:.3f}" for r in rows)
            + " / validation "
            + ", ".join(f"{r['val_accuracy']:.3f}" for r in rows)
            + f" ({time.time() - start:.0f} s)", flush=True,
        )
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)
    print()
    print(
        f"BBC News, {PER_CLASS}/class train, {TEST_PER_CLASS}/class test, "
        f"MiniLM-L6 seq {SEQUENCE_LENGTH}, {EPOCHS} epochs, seeds {args.seeds}, "
        f"schedule {args.schedule}, probe epochs {args.probe_epochs}, "
        f"{VAL_PER_CLASS}/class validation"
    )
    print(_table(results))


if __name__ == "__main__":
    main()
