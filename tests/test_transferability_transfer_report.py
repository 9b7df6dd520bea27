"""TransferReport: indicators, verdicts, broken baselines, plot, round trip."""

import json

import numpy as np
import pytest

from keras_transfer.transferability import BaselineRun, TransferReport
from tests.testing import run_serialization_test


def test_indicators_by_hand():
    transfer = {"val_accuracy": [0.6, 0.7, 0.75, 0.78]}
    baseline = {"val_accuracy": [0.2, 0.4, 0.55, 0.65]}
    report = TransferReport(transfer, baseline, metric="val_accuracy")
    assert report.jumpstart == pytest.approx(0.4)
    assert report.asymptotic_gain == pytest.approx(0.13)
    assert report.area_gain == pytest.approx((0.4 + 0.3 + 0.2 + 0.13) / 4)
    assert report.epochs_to_threshold == {"transfer": 2, "baseline": 4}
    assert report.verdict == "positive"
    text = str(report)
    for word in ("jumpstart", "learning speed", "asymptotic gain", "positive"):
        assert word in text


def test_lower_is_better_is_inferred_and_overridable():
    transfer = {"val_loss": [1.0, 0.8, 0.6]}
    baseline = {"val_loss": [2.0, 1.5, 1.0]}
    report = TransferReport(transfer, baseline, metric="val_loss")
    assert not report.higher_is_better
    assert report.jumpstart == pytest.approx(1.0)
    assert report.asymptotic_gain == pytest.approx(0.4)
    assert report.epochs_to_threshold == {"transfer": 1, "baseline": 3}
    assert report.verdict == "positive"
    flipped = TransferReport(transfer, baseline, "val_loss", mode="max")
    assert flipped.verdict == "negative"
    assert not TransferReport(
        {"error_rate": [0.1]}, {"error_rate": [0.2]}, "error_rate", mode="min"
    ).higher_is_better


@pytest.mark.parametrize(
    "metric, higher",
    [
        ("val_accuracy", True),
        ("acc", True),
        ("val_auc_1", True),
        ("r2_score", True),
        ("cosine_similarity", True),
        ("val_loss", False),
        ("domain_loss", False),
        # Lower is better, with names that say nothing of it: Keras knows.
        ("val_kl_divergence", False),
        ("hinge", False),
        ("val_poisson", False),
        ("log_cosh", False),
    ],
)
def test_direction_is_what_keras_knows(metric, higher):
    better, worse = [0.5, 0.6], [0.7, 0.9]
    report = TransferReport({metric: better}, {metric: worse}, metric)
    assert report.higher_is_better is higher
    assert report.verdict == ("negative" if higher else "positive")


def test_unknown_metric_direction_requires_mode():
    with pytest.raises(ValueError, match=r"Pass mode='max'.*or mode='min'"):
        TransferReport({"my_score": [1.0]}, {"my_score": [0.5]}, "my_score")
    with pytest.raises(ValueError, match="`mode` must be one of"):
        TransferReport({"acc": [1.0]}, {"acc": [0.5]}, "acc", mode="up")
    report = TransferReport({"my_score": [1.0]}, {"my_score": [0.5]}, "my_score",
                            mode="max")
    assert report.verdict == "positive"
    again = TransferReport.from_dict(report.to_dict())
    assert again.mode == "max" and again.verdict == "positive"


@pytest.mark.parametrize(
    "transfer, verdict",
    [
        ([0.50, 0.60, 0.705], "neutral"),  # final gain 0.005 within 0.01
        ([0.50, 0.60, 0.68], "negative"),
        ([0.60, 0.69, 0.70], "positive"),  # same final, learns faster
        ([0.40, 0.50, 0.70], "negative"),  # same final, learns slower
    ],
)
def test_verdicts_with_tolerance(transfer, verdict):
    baseline = {"acc": [0.50, 0.60, 0.70]}
    report = TransferReport({"acc": transfer}, baseline, "acc", tolerance=0.01)
    assert report.verdict == verdict
    lenient = TransferReport({"acc": transfer}, baseline, "acc", tolerance=0.5)
    assert lenient.verdict == "neutral"


def test_broken_baseline_at_chance_with_perfect_training_accuracy():
    # MobileNetV2 from scratch on 200 images: train accuracy 1.0, eval 0.101.
    baseline = {"accuracy": [0.5, 0.9, 1.0], "val_accuracy": [0.1, 0.1, 0.101]}
    transfer = {"accuracy": [0.6, 0.9, 1.0], "val_accuracy": [0.6, 0.75, 0.8]}
    report = TransferReport(transfer, baseline, "val_accuracy", num_classes=10)
    assert report.verdict == "baseline_broken"
    assert "chance" in report.baseline_problem
    assert "BatchNorm" in report.summary()
    # Without num_classes the chance check cannot run: a (false) positive.
    assert TransferReport(transfer, baseline, "val_accuracy").verdict == "positive"


def test_broken_baseline_train_eval_gap_on_same_data():
    baseline = {"accuracy": [0.8, 0.95, 1.0], "val_accuracy": [0.3, 0.35, 0.4]}
    transfer = {"val_accuracy": [0.6, 0.75, 0.8]}
    report = TransferReport(transfer, baseline, "val_accuracy", same_data=True)
    assert report.verdict == "baseline_broken"
    assert "disagree by 0.600" in report.baseline_problem
    # On held-out data a gap is ordinary overfitting, not a broken baseline.
    assert TransferReport(transfer, baseline, "val_accuracy").verdict == "positive"
    # A baseline above chance is sound even when it overfits.
    ok = TransferReport(transfer, baseline, "val_accuracy", num_classes=10)
    assert ok.verdict == "positive"


def test_baseline_at_chance_without_training_curve():
    report = TransferReport(
        {"val_acc": [0.5]}, {"val_acc": [0.2]}, "val_acc", num_classes=5
    )
    assert report.verdict == "baseline_broken"
    assert "never rises above chance" in report.baseline_problem


def test_accepts_history_objects():
    class FakeHistory:
        def __init__(self, history):
            self.history = history

    report = TransferReport(
        FakeHistory({"val_loss": [0.5, 0.4]}), FakeHistory({"val_loss": [0.6, 0.5]}),
        metric="val_loss",
    )
    assert report.verdict == "positive"


def test_to_dict_from_dict_round_trip():
    report = TransferReport(
        {"val_accuracy": [0.3, 0.5, 0.6]},
        {"val_accuracy": [0.2, 0.3, 0.5], "accuracy": [0.4, 0.6, 0.7]},
        metric="val_accuracy",
        tolerance=0.02,
        num_classes=4,
    )
    data = json.loads(json.dumps(report.to_dict()))
    again = TransferReport.from_dict(data)
    assert again.to_dict() == report.to_dict()
    revived = run_serialization_test(report)
    assert revived.to_dict() == report.to_dict()


def test_plot_writes_a_png(tmp_path):
    report = TransferReport(
        {"val_accuracy": [0.6, 0.7, 0.75]}, {"val_accuracy": [0.2, 0.5, 0.7]}
    )
    path = report.plot(str(tmp_path / "report.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_bad_input():
    good = {"val_accuracy": [0.5, 0.6]}
    with pytest.raises(ValueError, match="Available metrics: \\['val_accuracy'\\]"):
        TransferReport(good, good, metric="val_auc")
    with pytest.raises(ValueError, match="`baseline` must be a Keras History"):
        TransferReport(good, [0.5, 0.6])
    with pytest.raises(ValueError, match="`transfer\\['val_accuracy'\\]` is empty"):
        TransferReport({"val_accuracy": []}, good)
    with pytest.raises(ValueError, match="must be finite"):
        TransferReport(good, {"val_accuracy": [0.5, np.nan]})
    with pytest.raises(ValueError, match="`tolerance`"):
        TransferReport(good, good, tolerance=-1)
    with pytest.raises(ValueError, match="`num_classes`"):
        TransferReport(good, good, num_classes=1)
    with pytest.raises(ValueError, match="`metric`"):
        TransferReport(good, good, metric="")
    with pytest.raises(ValueError, match="`broken_gap`"):
        TransferReport(good, good, broken_gap=0)


# --- Real data: near transfer is positive, an unrelated source is not --------


def _cnn(num_classes, seed):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(num_classes),
        ]
    )


def _compiled(model):
    import keras

    model.compile(
        keras.optimizers.Adam(3e-3),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _transferred(source):
    model = _cnn(5, 2)
    for layer, src in zip(model.layers[:-1], source.layers[:-1]):
        layer.set_weights(src.get_weights())
        layer.trainable = False  # linear probe on the source features
    return _compiled(model)


@pytest.mark.slow
@pytest.mark.realdata
def test_mnist_digits_near_transfer_positive_unrelated_source_negative():
    from keras_transfer.datasets import load_mnist

    (x_train, y_train), (x_test, y_test) = load_mnist(allow_download=False)
    x_train, x_test = x_train[..., None], x_test[..., None]
    # Sources: digits 0-4 with their labels, and the same images with the
    # labels shuffled (an unrelated task).
    source_idx = np.flatnonzero(y_train < 5)[:6000]
    xs, ys = x_train[source_idx], y_train[source_idx]
    related = _compiled(_cnn(5, 1))
    related.fit(xs, ys, epochs=2, batch_size=64, verbose=0)
    unrelated = _compiled(_cnn(5, 1))
    shuffled = np.random.default_rng(0).permutation(ys)
    unrelated.fit(xs, shuffled, epochs=3, batch_size=64, verbose=0)
    # Target: digits 5-9, 10 labelled images per class.
    pool = np.flatnonzero(y_train >= 5)
    pick = np.concatenate([pool[y_train[pool] == c][:10] for c in range(5, 10)])
    xt, yt = x_train[pick], y_train[pick] - 5
    val = np.flatnonzero(y_test >= 5)[:500]
    xv, yv = x_test[val], y_test[val] - 5

    run = BaselineRun(
        lambda: _compiled(_cnn(5, 2)), xt, yt, validation_data=(xv, yv),
        batch_size=10,
    )
    model = _transferred(related)
    model.fit(xt, yt, epochs=8, batch_size=10, validation_data=(xv, yv),
              callbacks=[run], verbose=0)
    near = run.report("val_accuracy", num_classes=5, tolerance=0.02)
    assert near.verdict == "positive", near.summary()
    assert near.asymptotic_gain > 0.05, near.summary()

    model = _transferred(unrelated)
    history = model.fit(xt, yt, epochs=8, batch_size=10,
                        validation_data=(xv, yv), verbose=0)
    far = TransferReport(history, run.baseline_history, "val_accuracy",
                         num_classes=5, tolerance=0.02)
    print(near.summary(), far.summary(), sep="\n")  # shown with pytest -s
    assert far.verdict in ("negative", "neutral"), far.summary()


def test_broken_baseline_training_vs_inference_mode_on_training_data():
    transfer = {"val_accuracy": [0.6, 0.7]}
    baseline = {"accuracy": [0.3, 0.5], "val_accuracy": [0.3, 0.4]}
    report = TransferReport(
        transfer, baseline, "val_accuracy", baseline_train_inference=[0.1, 0.12]
    )
    assert report.verdict == "baseline_broken"
    assert "inference mode" in report.baseline_problem
    assert TransferReport.from_dict(report.to_dict()).verdict == "baseline_broken"
    sound = TransferReport(
        transfer, baseline, "val_accuracy", baseline_train_inference=[0.3, 0.48]
    )
    assert sound.verdict == "positive"


@pytest.mark.realdata
def test_batchnorm_baseline_from_scratch_on_few_images_is_reported_broken():
    # The MobileNetV2-from-scratch failure in miniature: a BatchNorm CNN fitted
    # on 100 raw-pixel MNIST images learns in training mode while its moving
    # statistics have not settled, so in inference mode it stays near chance.
    import keras

    from keras_transfer.datasets import load_mnist

    (x, y), (xv, yv) = load_mnist(allow_download=False)
    x, y = x[:100, ..., None] * 255.0, y[:100]
    xv, yv = xv[:300, ..., None] * 255.0, yv[:300]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def batchnorm_cnn():
        model = keras.Sequential([
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ])
        model.compile(keras.optimizers.Adam(1e-2), loss, metrics=["accuracy"])
        return model

    transfer = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255.0),
         keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    transfer.compile(keras.optimizers.Adam(1e-2), loss, metrics=["accuracy"])
    run = BaselineRun(batchnorm_cnn, x, y, validation_data=(xv, yv), batch_size=20)
    transfer.fit(x, y, epochs=6, batch_size=20, validation_data=(xv, yv),
                 callbacks=[run], verbose=0)
    report = run.report("val_accuracy", num_classes=10)
    print(report.summary())  # shown with pytest -s
    history = run.baseline_history
    assert max(history["accuracy"]) > 0.35, history  # it learns in training mode
    assert report.verdict == "baseline_broken", report.summary()
    assert "BatchNorm" in report.summary()
    # BaselineRun also recorded the inference-mode metrics on the training
    # data, which trail the training-mode ones.
    assert len(history["inference_accuracy"]) == 6
    assert history["inference_accuracy"][-1] < history["accuracy"][-1]
