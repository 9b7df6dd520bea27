"""Step-time overhead of `DiscriminativeLR` over the bare optimizer.

Trains `keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3))`
with batch 16 under three optimizers, interleaving their steps (A B C A B C
...) so that machine load hits all of them alike, and prints the median step
time of each, the ratios to bare Adam and the median of the per-round ratios:

- bare `keras.optimizers.Adam`;
- `DiscriminativeLR(Adam)` with a different factor for every block (layer-wise
  decay over 18 groups);
- Keras' `MultiOptimizer` with two Adams (body and head), for reference.

It then times `optimizer.apply` alone (in a `tf.function`, on the same
weights and fixed gradients), where the per-variable work is not diluted by
the forward and backward passes.

Run: `python benchmarks/bench_discriminative_lr.py [--rounds 40] [--apply-only]`.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_transfer.optimizers import DiscriminativeLR  # noqa: E402


def mobilenet():
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(
        weights=None, input_shape=(96, 96, 3), classes=10
    )


def block_groups():
    """MobileNetV2 in 18 groups: stem, blocks 1..16, top."""
    groups = {"stem": ["^Conv1/", "^bn_Conv1/", "^expanded_conv_"]}
    for i in range(1, 17):
        groups[f"block_{i}"] = f"^block_{i}_"
    groups["top"] = ["^Conv_1/", "^Conv_1_bn/", "^predictions/"]
    return groups


def make(kind):
    model = mobilenet()
    if kind == "adam":
        opt = keras.optimizers.Adam(1e-3)
    elif kind == "discriminative":
        opt = DiscriminativeLR(
            keras.optimizers.Adam(1e-3), groups=block_groups(), layer_decay=0.8
        )
    else:
        opt = keras.optimizers.MultiOptimizer(
            keras.optimizers.OptimizerMap(
                keras.optimizers.Adam(1e-3),
                {".*block_.*": keras.optimizers.Adam(1e-4)},
            )
        )
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--apply-only", action="store_true", help="time optimizer.apply alone"
    )
    args = parser.parse_args()
    if args.apply_only:
        apply_only(args.rounds * 5)
        return

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(16, 96, 96, 3)).astype("float32")
    y = rng.integers(0, 10, size=(16,))
    kinds = ["adam", "discriminative", "multi_optimizer"]
    models = {kind: make(kind) for kind in kinds}
    for model in models.values():
        for _ in range(args.warmup):
            model.train_on_batch(x, y)
    times = {kind: [] for kind in kinds}
    for r in range(args.rounds):
        order = kinds if r % 2 == 0 else kinds[::-1]
        for kind in order:
            start = time.perf_counter()
            models[kind].train_on_batch(x, y)
            times[kind].append(time.perf_counter() - start)
    medians = {kind: statistics.median(t) for kind, t in times.items()}
    print(f"MobileNetV2 96x96, batch 16, {args.rounds} interleaved rounds")
    for kind in kinds:
        print(
            f"  {kind:16s} median step {1e3 * medians[kind]:7.1f} ms  "
            f"ratio to adam {medians[kind] / medians['adam']:.3f}"
        )
    # Median of the per-round ratios: each pair of steps ran back to back, so
    # slow drifts in machine load cancel out.
    paired = statistics.median(
        d / a for d, a in zip(times["discriminative"], times["adam"])
    )
    ratio = medians["discriminative"] / medians["adam"]
    print(
        f"DiscriminativeLR(Adam) / Adam step time: {ratio:.3f} (ratio of medians), "
        f"{paired:.3f} (median of per-round ratios); target <= 1.03"
    )

    apply_only(args.rounds * 5)


def _compiled_apply(opt, grads, variables):
    @tf.function
    def step():
        opt.apply(grads, variables)

    return step


def apply_only(rounds):
    """The optimizer's `apply` alone, in a `tf.function`, on MobileNetV2 weights."""
    kinds = ["adam", "discriminative"]
    steps = {}
    for kind in kinds:
        model = mobilenet()
        variables = model.trainable_variables
        opt = keras.optimizers.Adam(1e-3)
        if kind == "discriminative":
            opt = DiscriminativeLR(opt, groups=block_groups(), layer_decay=0.8)
        opt.build(variables)
        grads = [tf.random.normal(v.shape) * 1e-3 for v in variables]

        steps[kind] = _compiled_apply(opt, grads, variables)
        steps[kind]()
    times = {kind: [] for kind in kinds}
    for r in range(rounds):
        for kind in kinds if r % 2 == 0 else kinds[::-1]:
            start = time.perf_counter()
            steps[kind]()
            times[kind].append(time.perf_counter() - start)
    paired = statistics.median(
        d / a for d, a in zip(times["discriminative"], times["adam"])
    )
    print(
        f"optimizer.apply alone ({rounds} rounds): adam "
        f"{1e3 * statistics.median(times['adam']):.1f} ms, discriminative "
        f"{1e3 * statistics.median(times['discriminative']):.1f} ms, "
        f"median of per-round ratios {paired:.3f}"
    )


if __name__ == "__main__":
    main()
