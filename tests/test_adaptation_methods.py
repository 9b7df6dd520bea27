"""The adaptation method objects: registry, configs, values, errors, strategy."""

import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer.adaptation import (
    AFN,
    CDAN,
    CDANE,
    CORAL,
    DANN,
    JMMD,
    MCC,
    MDD,
    MMD,
    AdaptationMethod,
    DomainAdaptationModel,
    EntropyMinimization,
    methods,
    pair_datasets,
)
from keras_transfer.adaptation.methods import AdaptationBatch
from keras_transfer.callbacks import AdaptationMonitor, AdaptationWarning
from keras_transfer.layers import DomainDiscriminator
from tests.testing import run_model_saving_test, run_serialization_test


def _nets(seed=0, inputs=4, classes=3, activation="softmax"):
    keras.utils.set_random_seed(seed)
    features = keras.Sequential(
        [keras.Input((inputs,)), keras.layers.Dense(6, activation="relu")],
        name="features",
    )
    head = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(classes, activation=activation)],
        name="head",
    )
    return features, head


def _method(name, **kwargs):
    if methods.REGISTRY[name].uses_discriminator:
        kwargs.setdefault("discriminator", DomainDiscriminator((5,)))
    return methods.get(name, **kwargs)


def _data(n=16, batch_size=8, shift=1.0, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(n, 4)).astype("float32")
    ys = rng.integers(0, 3, n)
    xt = (rng.normal(size=(n, 4)) + shift).astype("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = pair_datasets((xs, ys), xt, batch_size=batch_size, shuffle=False)
    return data, xt


def _compile(model, optimizer=None):
    model.compile(optimizer or keras.optimizers.Adam(0.01),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


# ---------------------------------------------------------------- registry


def test_registry_maps_every_name_to_its_class():
    expected = {
        "dann": DANN, "cdan": CDAN, "cdan+e": CDANE, "mdd": MDD, "mmd": MMD,
        "jmmd": JMMD, "coral": CORAL, "mcc": MCC,
        "entropy": EntropyMinimization, "afn": AFN,
    }
    assert methods.REGISTRY == expected
    for name, cls in expected.items():
        method = methods.get(name.upper())
        assert type(method) is cls and isinstance(method, AdaptationMethod)
        assert method.name == name.replace("+", "_")
    assert methods.get("mdd", margin=2.0).margin == 2.0
    with pytest.raises(ValueError, match="Known methods: dann, cdan"):
        methods.get("dan")


def test_declarations():
    needs = {n for n, c in methods.REGISTRY.items() if c.needs_target_predictions}
    assert needs == {"cdan", "cdan+e", "mdd", "jmmd", "mcc", "entropy"}
    reversal = {n for n, c in methods.REGISTRY.items() if c.uses_reversal}
    assert reversal == {"dann", "cdan", "cdan+e", "mdd"}
    batch_statistic = {n for n, c in methods.REGISTRY.items() if c.batch_statistic}
    assert batch_statistic == {"mmd", "jmmd", "coral", "mcc"}
    assert DANN.metric_names == ("domain_accuracy",)
    assert {n for n, c in methods.REGISTRY.items() if c.min_batch_size == 2} == {
        "dann", "cdan", "cdan+e", "mmd", "jmmd", "coral", "mcc"}


@pytest.mark.parametrize("method", [
    DANN(lambda_=0.3, discriminator=DomainDiscriminator((4,), dropout=0.1)),
    CDAN(lambda_=0.2, random_dim=64), CDANE(), MDD(lambda_=0.1, margin=2.0),
    MMD(kernel_multipliers=(0.5, 1.0), linear=True),
    JMMD(prediction_sigma=None), CORAL(name="coral_a"), MCC(temperature=3.0),
    EntropyMinimization(), AFN(delta=0.5),
], ids=lambda m: type(m).__name__)
def test_config_round_trip(method):
    revived = run_serialization_test(method)
    assert revived.get_config() == method.get_config()


@pytest.mark.parametrize("make, message", [
    (lambda: DANN(lambda_=-1.0), "`lambda_` must be >= 0"),
    (lambda: DANN(discriminator="big"), "`discriminator` must be a Keras"),
    (lambda: CDAN(random_dim=0), "`random_dim` must be a positive int"),
    (lambda: MDD(margin=0.0), "`margin` must be a finite number > 0"),
    (lambda: MDD(lambda_="x"), "`lambda_` must be a float"),
    (lambda: MMD(kernel_multipliers=()), "`kernel_multipliers` must be"),
    (lambda: JMMD(prediction_sigma=-1.0), "`prediction_sigma` must be"),
    (lambda: MCC(temperature=0), "`temperature` must be a finite number > 0"),
    (lambda: EntropyMinimization(diversity_weight=-1),
     "`diversity_weight` must be a finite number >= 0"),
    (lambda: AFN(delta=-1), "`delta` must be a finite number > 0"),
])
def test_hyperparameters_are_checked(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_model_config_keeps_method_objects_and_weights(tmp_path):
    features, head = _nets()
    model = _compile(DomainAdaptationModel(
        features, head,
        method=[(MMD(kernel_multipliers=(1.0, 2.0)), 0.5), CORAL(),
                (MCC(temperature=2.0), 0.3), ("entropy", 0.1), (AFN(), 0.05)],
    ))
    data, xt = _data()
    model.fit(data, epochs=1, verbose=0)
    revived = run_serialization_test(model)
    assert [type(m) for m in revived.methods] == [MMD, CORAL, MCC,
                                                   EntropyMinimization, AFN]
    assert revived.method_weights == [0.5, 1.0, 0.3, 0.1, 0.05]
    assert revived.methods[0].kernel_multipliers == (1.0, 2.0)
    loaded = run_model_saving_test(model, xt, tmp_path)
    assert loaded.method == model.method
    assert loaded.methods[2].temperature == 2.0


def test_method_names_must_be_unique():
    features, head = _nets()
    with pytest.raises(ValueError, match="names must be unique"):
        DomainAdaptationModel(features, head, method=[MMD(), MMD()])
    model = DomainAdaptationModel(
        features, head, method=[MMD(), MMD(linear=True, name="mmd_linear")])
    assert model.method == {"mmd": 1.0, "mmd_linear": 1.0}


def test_a_method_given_without_a_weight_gets_its_default_weight():
    features, head = _nets()
    default = EntropyMinimization.default_weight
    assert default != 1.0  # chosen by benchmarks/bench_adaptation_shifts.py
    for method in ("entropy", EntropyMinimization(), [EntropyMinimization()]):
        model = DomainAdaptationModel(features, head, method=method)
        assert model.method == {"entropy": default}
    # An explicit weight wins: the weight 1 of earlier releases stays reachable.
    for method in ([("entropy", 1.0)], {"entropy": 1.0},
                   [(EntropyMinimization(diversity_weight=0.0), 1.0)]):
        model = DomainAdaptationModel(features, head, method=method)
        assert model.method == {"entropy": 1.0}
    model = DomainAdaptationModel(features, head, method=["mmd", "entropy"])
    assert model.method == {"mmd": MMD.default_weight, "entropy": default}
    # The weights are saved in the config, so a reload keeps them.
    assert run_serialization_test(model).method == model.method


# ----------------------------------------------------- values: closed forms


def _np_gaussian_sum(sq, multipliers, base):
    return sum(np.exp(-sq / (2.0 * m * base)) for m in multipliers)


def _np_mmd(xs, xt, multipliers, sigma_last=None, parts_t=None, parts_s=None):
    """The biased MMD^2 of (joint) Gaussian kernels, written with loops."""
    parts_s = parts_s or [xs]
    parts_t = parts_t or [xt]
    n, m = len(parts_s[0]), len(parts_t[0])
    kernel = np.ones((n + m, n + m))
    for index, (a, b) in enumerate(zip(parts_s, parts_t)):
        pooled = np.concatenate([a, b]).astype("float64")
        sq = np.array([[np.sum((p - q) ** 2) for q in pooled] for p in pooled])
        if sigma_last is not None and index == len(parts_s) - 1 and index > 0:
            kernel *= np.exp(-sq / (2.0 * sigma_last**2))
        else:
            kernel *= _np_gaussian_sum(sq, multipliers, sq.mean())
    k_ss, k_tt, k_st = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return k_ss.mean() + k_tt.mean() - 2.0 * k_st.mean()


def test_mmd_matches_the_closed_form():
    # One sample per domain, one kernel: the bandwidth is the mean squared
    # distance of the pooled pair, a^2 / 2, so k(s, t) = exp(-1) for every
    # a, and MMD^2 = 2 - 2 / e.
    for a in (0.3, 2.0, 7.0):
        batch = AdaptationBatch(np.zeros((1, 1), "float32"),
                                np.full((1, 1), a, "float32"), None, None, False)
        value = float(MMD(kernel_multipliers=(1.0,)).compute(batch))
        assert value == pytest.approx(2.0 - 2.0 / math.e, rel=1e-5)
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(5, 3)).astype("float32")
    xt = (rng.normal(size=(4, 3)) + 0.7).astype("float32")
    multipliers = (0.25, 1.0, 4.0)
    batch = AdaptationBatch(xs, xt, None, None, False)
    value = float(MMD(kernel_multipliers=multipliers).compute(batch))
    assert value == pytest.approx(_np_mmd(xs, xt, multipliers), rel=1e-4)


def test_jmmd_matches_the_closed_form():
    # As for MMD, times a fixed-width kernel on the predictions:
    # JMMD^2 = 2 - 2 exp(-1) exp(-|p_s - p_t|^2 / (2 sigma^2)).
    p_s = np.array([[0.9, 0.1]], "float32")
    p_t = np.array([[0.3, 0.7]], "float32")
    sigma = 0.5
    batch = AdaptationBatch(np.zeros((1, 1), "float32"),
                            np.ones((1, 1), "float32"), p_s, p_t, False)
    value = float(JMMD(kernel_multipliers=(1.0,), prediction_sigma=sigma).compute(
        batch))
    expected = 2.0 - 2.0 * math.exp(-1.0) * math.exp(-0.72 / (2 * sigma**2))
    assert value == pytest.approx(expected, rel=1e-5)
    rng = np.random.default_rng(1)
    fs, ft = rng.normal(size=(6, 3)), rng.normal(size=(5, 3)) + 0.5
    ps = rng.dirichlet(np.ones(3), 6)
    pt = rng.dirichlet(np.ones(3), 5)
    batch = AdaptationBatch(*(v.astype("float32") for v in (fs, ft, ps, pt)),
                            from_logits=False)
    value = float(JMMD(kernel_multipliers=(0.5, 2.0)).compute(batch))
    expected = _np_mmd(None, None, (0.5, 2.0), sigma_last=0.92,
                       parts_s=[fs, ps], parts_t=[ft, pt])
    assert value == pytest.approx(expected, rel=1e-4)
    # From logits: the kernel reads the softmax probabilities.
    logits = AdaptationBatch(*(v.astype("float32") for v in (fs, ft)),
                             np.log(ps).astype("float32"),
                             np.log(pt).astype("float32"), from_logits=True)
    assert float(JMMD(kernel_multipliers=(0.5, 2.0)).compute(logits)) == (
        pytest.approx(expected, rel=1e-4))


def test_afn_pulls_norms_up_by_delta():
    features = tf.Variable([[3.0, 4.0], [0.6, 0.8]])
    with tf.GradientTape() as tape:
        batch = AdaptationBatch(features[:1], features[1:], None, None, False)
        loss = AFN(delta=1.0).compute(batch)
    assert float(loss) == pytest.approx(1.0)
    # Gradient descent on the loss moves each row along itself, outwards.
    grad = tape.gradient(loss, features).numpy()
    directions = -grad / np.linalg.norm(grad, axis=1, keepdims=True)
    np.testing.assert_allclose(directions, [[0.6, 0.8], [0.6, 0.8]], atol=1e-5)


def test_information_maximization_closed_form():
    # Mean per-sample entropy minus diversity_weight times the entropy of the
    # mean prediction, in numpy.
    p = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.1, 0.1, 0.8]], "float32")

    def h(q):
        return -np.sum(q * np.log(q), axis=-1)

    for diversity_weight in (0.0, 0.5, 1.0):
        method = EntropyMinimization(diversity_weight=diversity_weight)
        method.build(methods.MethodContext((None, 2), 3, False, None))
        value = float(method.compute(
            AdaptationBatch(np.zeros((3, 2)), np.zeros((3, 2)), p, p, False)))
        expected = h(p).mean() - diversity_weight * h(p.mean(axis=0))
        assert value == pytest.approx(expected, rel=1e-5)
    assert EntropyMinimization(diversity_weight=0.5).batch_statistic
    assert not EntropyMinimization(diversity_weight=0.0).batch_statistic


# ---------------------------------------------------------------- bad input


def test_a_method_the_classifier_cannot_serve():
    # A one-unit sigmoid head has no class vector for methods that read
    # predictions; feature-only methods are fine with it.
    for name in ("cdan", "cdan+e", "mdd", "jmmd", "mcc", "entropy"):
        features, head = _nets(classes=1, activation="sigmoid")
        with pytest.raises(ValueError, match=r"`method` .*`classifier`.*\(None, 1\)"):
            DomainAdaptationModel(features, head, method=_method(name)).build(
                (None, 4))
    for name in ("dann", "mmd", "coral", "afn"):
        features, head = _nets(classes=1, activation="sigmoid")
        DomainAdaptationModel(features, head, method=_method(name)).build((None, 4))

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3, activation="softmax")

        def build(self, input_shape):
            self.dense.build(input_shape)

        def call(self, x):
            return self.dense(x)

        def compute_output_shape(self, input_shape):
            return tuple(input_shape)[:-1] + (3,)

    features, _ = _nets()
    with pytest.raises(ValueError, match="MDD needs a copy of `classifier`"):
        DomainAdaptationModel(features, Subclassed(), method=MDD()).build((None, 4))


def test_a_target_smaller_than_a_batch():
    xs, ys = np.zeros((32, 4), "float32"), np.zeros(32)
    with pytest.raises(ValueError, match=r"`target` has 5 samples.*batch_size=8"):
        pair_datasets((xs, ys), np.zeros((5, 4), "float32"), batch_size=8)
    with pytest.raises(ValueError, match=r"`source` has 3 samples"):
        pair_datasets((xs[:3], ys[:3]), np.zeros((40, 4)), batch_size=8)


def test_source_and_target_of_different_feature_shapes():
    with pytest.raises(ValueError, match="`source` and `target` must have the"):
        pair_datasets((np.zeros((8, 4)), np.zeros(8)), np.zeros((8, 5)))
    features, head = _nets()
    model = _compile(DomainAdaptationModel(features, head, method="coral"))
    with pytest.raises(ValueError, match=r"x\['source'\] and x\['target'\]"):
        model.fit({"source": np.zeros((8, 4), "float32"),
                   "target": np.zeros((8, 5), "float32")},
                  np.zeros(8), batch_size=4, verbose=0)


def test_a_batch_below_a_methods_minimum_names_the_methods():
    features, head = _nets()
    model = _compile(DomainAdaptationModel(
        features, head, method=[EntropyMinimization(diversity_weight=0.0), "coral"]))
    one = tf.data.Dataset.from_tensors(
        ({"source": np.zeros((1, 4), "float32"),
          "target": np.zeros((1, 4), "float32")}, np.zeros((1,))))
    with pytest.raises(ValueError, match=r"\['coral'\] need at least 2"):
        model.fit(one, epochs=1, verbose=0)
    # Plain entropy minimization is defined on one sample; with its
    # diversity term (the default) it needs two.
    model = _compile(DomainAdaptationModel(
        features, head, method=EntropyMinimization(diversity_weight=0.0)))
    model.fit(one, epochs=1, verbose=0)
    model = _compile(DomainAdaptationModel(features, head, method="entropy"))
    with pytest.raises(ValueError, match=r"\['entropy'\] need at least 2"):
        model.fit(one, epochs=1, verbose=0)


# ---------------------------------------------------------------- the guard


def _fit_collects_warnings(model, data, epochs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(data, epochs=epochs, verbose=0)
    return history.history, [w for w in caught
                             if issubclass(w.category, AdaptationWarning)]


def test_logs_describe_target_predictions_and_source_accuracy():
    features, head = _nets()
    model = _compile(DomainAdaptationModel(features, head, method="mmd"))
    data, xt = _data(n=32)
    logs = model.fit(data, epochs=1, verbose=0).history
    # source_accuracy is the compiled accuracy on the source batches.
    assert logs["source_accuracy"][0] == pytest.approx(logs["accuracy"][0])
    # The epoch's target statistics, from the inference pass on the target.
    assert 0.0 <= logs["target_entropy"][0] <= 1.0
    assert 1 / 3 <= logs["target_top_class_share"][0] <= 1.0


def test_no_warning_on_a_healthy_run():
    rng = np.random.default_rng(0)
    centers = np.array([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    ys = rng.integers(0, 3, 96)
    xs = (centers[ys] + rng.normal(size=(96, 4)) * 0.5).astype("float32")
    yt = rng.integers(0, 3, 96)
    xt = (centers[yt] + rng.normal(size=(96, 4)) * 0.5 + 0.3).astype("float32")
    features, head = _nets()
    model = _compile(DomainAdaptationModel(features, head, method="coral"))
    data = pair_datasets((xs, ys), xt, batch_size=32, seed=0)
    logs, caught = _fit_collects_warnings(model, data, epochs=4)
    assert not caught, [str(w.message) for w in caught]
    assert min(logs["target_entropy"]) > 0.8


def test_collapse_of_target_predictions_warns():
    # Every target sample lies far out along one class's direction: the
    # classifier puts them all in that class.
    rng = np.random.default_rng(0)
    centers = np.array([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    ys = rng.integers(0, 3, 96)
    xs = (centers[ys] + rng.normal(size=(96, 4)) * 0.5).astype("float32")
    xt = (rng.normal(size=(96, 4)) * 0.5 + [12.0, 0, 0, 0]).astype("float32")
    features, head = _nets()
    plain_entropy = [(EntropyMinimization(diversity_weight=0.0), 1.0)]
    model = _compile(DomainAdaptationModel(features, head, method=plain_entropy))
    data = pair_datasets((xs, ys), xt, batch_size=32, seed=0)
    logs, caught = _fit_collects_warnings(model, data, epochs=3)
    assert logs["target_top_class_share"][-1] > 0.9
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "collapse onto few classes" in messages[0]
    # Off with monitor=False.
    features, head = _nets()
    model = _compile(DomainAdaptationModel(features, head, method=plain_entropy,
                                           monitor=False))
    assert not _fit_collects_warnings(model, data, epochs=1)[1]


def test_a_source_accuracy_fall_warns():
    # The adaptation term overrides the task: from the second epoch on, a
    # callback destroys the classifier (as a runaway method would); the
    # source accuracy that the model logs falls and the monitor says so.
    rng = np.random.default_rng(0)
    centers = np.array([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    ys = rng.integers(0, 3, 96)
    xs = (centers[ys] + rng.normal(size=(96, 4)) * 0.5).astype("float32")
    xt = (centers[ys] + rng.normal(size=(96, 4)) * 0.5).astype("float32")

    class Break(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch >= 2:
                kernel = self.model.classifier.weights[0]
                kernel.assign(-10.0 * keras.ops.abs(kernel))
                self.model.optimizer.learning_rate.assign(0.0)

    features, head = _nets()
    model = _compile(DomainAdaptationModel(features, head, method="coral"),
                     keras.optimizers.Adam(0.05))
    data = pair_datasets((xs, ys), xt, batch_size=32, seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logs = model.fit(data, epochs=3, verbose=0, callbacks=[Break()]).history
    assert logs["source_accuracy"][1] - logs["source_accuracy"][2] > 0.2
    kinds = [str(w.message) for w in caught
             if issubclass(w.category, AdaptationWarning)]
    assert any("source accuracy fell" in m for m in kinds), kinds


def test_monitor_thresholds_are_checked_and_state_resets():
    with pytest.raises(ValueError, match="`min_target_entropy`"):
        AdaptationMonitor(min_target_entropy=1.5)
    with pytest.raises(ValueError, match="`max_source_accuracy_drop`"):
        AdaptationMonitor(max_source_accuracy_drop=0)
    monitor = AdaptationMonitor(max_source_accuracy_drop=0.1)
    run_serialization_test(monitor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        monitor.on_epoch_end(0, {"source_accuracy": 0.9})
        monitor.on_epoch_end(1, {"source_accuracy": 0.85})
        assert monitor.warnings_seen == []
        monitor.on_epoch_end(2, {"source_accuracy": 0.7})
    assert monitor.warnings_seen == ["source_accuracy"]
    monitor.on_train_begin()
    assert monitor.warnings_seen == [] and monitor.best_source_accuracy is None


# ------------------------------------------------- strategy, mixed precision


@pytest.mark.parametrize("method", ["coral", "mmd", "jmmd", "mcc", "entropy", "afn"])
def test_batch_statistics_over_the_global_batch_match_one_device(method, strategy):
    # Under MirroredStrategy each replica holds half of every batch; the
    # batch-statistic methods gather the global batch, so two replicas take
    # the same steps as one device.
    data, _ = _data(n=32, batch_size=16)
    weight = 5.0

    def make():
        features, head = _nets(seed=3)
        model = DomainAdaptationModel(features, head,
                                      method=[(_method(method), weight)])
        return _compile(model, keras.optimizers.SGD(0.1))

    single = make()
    single_logs = single.fit(data, epochs=1, verbose=0).history
    with strategy.scope():
        mirrored = make()
    mirrored_logs = mirrored.fit(data, epochs=1, verbose=0).history
    name = f"{method}_loss"
    assert mirrored_logs[name][0] == pytest.approx(single_logs[name][0], rel=1e-4)
    assert mirrored_logs["loss"][0] == pytest.approx(single_logs["loss"][0], rel=1e-4)
    for a, b in zip(single.weights, mirrored.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


def test_per_replica_batch_statistics_would_differ(strategy):
    # The reason for gathering: CORAL of each half is not CORAL of the batch.
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(16, 3)).astype("float32")
    xt = (rng.normal(size=(16, 3)) * 2.0).astype("float32")
    whole = float(CORAL().compute(AdaptationBatch(xs, xt, None, None, False)))
    halves = np.mean([
        float(CORAL().compute(AdaptationBatch(xs[i::2], xt[i::2], None, None,
                                              False)))
        for i in (0, 1)
    ])
    assert abs(whole - halves) > 0.05 * whole


@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def policy(request):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_mixed_precision(policy):
    features, head = _nets()
    model = _compile(DomainAdaptationModel(
        features, head,
        method=[_method("cdan+e"), (MDD(lambda_=0.1), 0.5), (JMMD(), 1.0),
                (MCC(), 1.0), (CORAL(), 1.0), (AFN(), 0.05)],
    ))
    data, xt = _data(n=32)
    logs = model.fit(data, epochs=2, verbose=0).history
    for key in ("loss", "cdan_e_loss", "mdd_loss", "jmmd_loss", "mcc_loss",
                "coral_loss", "afn_loss"):
        assert np.all(np.isfinite(logs[key])), (key, logs[key])
    assert all(v.dtype == "float32" for v in model.weights)
    assert features.compute_dtype == policy.split("_")[1]
    assert np.isfinite(model.predict(xt, verbose=0)).all()


# ------------------------------------------- each method beats source-only


def _shifted_blobs():
    # Three Gaussian blobs; the target is the source shrunk by 0.6 and moved
    # by (2, -1): a covariate shift that moves parts of two classes across
    # the source decision boundaries, while each target class stays a
    # separate cluster. Alignment (MMD, JMMD, CORAL, DANN) moves the target
    # features back onto the source ones; entropy and MCC move the
    # boundaries into the gaps between the target clusters.
    rng = np.random.default_rng(0)

    def blobs(n):
        y = rng.integers(0, 3, n)
        angle = np.deg2rad(y * 120.0)
        centers = np.stack([np.cos(angle), np.sin(angle)], 1) * 3.0
        return (centers + rng.normal(size=(n, 2)) * 0.6).astype("float32"), y

    xs, ys = blobs(256)
    xt, yt = blobs(256)
    xt = (xt * 0.6 + np.array([2.0, -1.0], "float32")).astype("float32")
    return xs, ys, xt, yt


def _blob_nets():
    keras.utils.set_random_seed(0)
    features = keras.Sequential([
        keras.Input((2,)), keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(8, activation="relu")])
    head = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(3, activation="softmax")])
    return features, head


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mmd", "jmmd", "coral", "mcc", "entropy",
                                    "dann", "cdan", "cdan+e", "afn"])
def test_method_beats_source_only_on_a_shift_it_addresses(method):
    # Both sides start from the same network trained on the source for 5
    # epochs, then train 8 more epochs: source only, or with the method.
    # Measured with these seeds at weight 1 and lambda_=1, before the
    # defaults of bench_adaptation_shifts.py (target accuracy, source only
    # 0.70): MMD 0.97, JMMD 0.97, CORAL 0.76, MCC 0.85, entropy (no
    # diversity term) 0.87, DANN 0.81, CDAN 0.86, CDAN+E 0.86, AFN at the
    # paper's weight 0.05: 0.91; at the new defaults MCC, entropy, CDAN and
    # CDAN+E pass too. (MDD is not here: 0.38 with lambda_=1 and 0.70 with
    # lambda_=0.1 on this shift.)
    xs, ys, xt, yt = _shifted_blobs()
    features, head = _blob_nets()
    source = keras.Sequential([features, head])
    source.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    source.fit(xs, ys, epochs=5, batch_size=32, verbose=0)
    start = [w.numpy() for w in source.weights]

    def accuracy(model):
        return float(np.mean(model.predict(xt, verbose=0).argmax(-1) == yt))

    features, head = _blob_nets()
    baseline = keras.Sequential([features, head])
    baseline.set_weights(start)
    baseline.compile(keras.optimizers.Adam(0.005), "sparse_categorical_crossentropy")
    baseline.fit(xs, ys, epochs=8, batch_size=32, verbose=0)

    features, head = _blob_nets()
    keras.Sequential([features, head]).set_weights(start)
    kwargs = {}
    if methods.REGISTRY[method].uses_discriminator:
        kwargs["discriminator"] = DomainDiscriminator((16,))
    # Each method at its defaults, its default weight included (AFN at the
    # paper's weight). The adversarial methods at their default
    # lambda_=0.1 move too little in 8 epochs on this small shift (DANN
    # 0.70, level with source only; CDAN+E 0.707 against 0.703 on Keras
    # 3.16): this test is about the method's direction, so they run at
    # lambda_=1.
    if method in ("dann", "cdan", "cdan+e"):
        kwargs["lambda_"] = 1.0
    entry = methods.get(method, **kwargs)
    model = DomainAdaptationModel(
        features, head, method=[(entry, 0.05)] if method == "afn" else [entry],
        monitor=False)
    model.compile(keras.optimizers.Adam(0.005), "sparse_categorical_crossentropy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(pair_datasets((xs, ys), xt, batch_size=32, seed=0), epochs=8,
                  verbose=0)
    assert accuracy(model) > accuracy(baseline) + 0.03, (
        method, accuracy(model), accuracy(baseline))
