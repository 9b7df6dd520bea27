"""DomainAdaptationModel: every method on a plain fit, saving, strategy, errors."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_transfer import _compat
from keras_transfer.adaptation import (
    CDAN,
    DANN,
    MDD,
    DomainAdaptationModel,
    methods,
    pair_datasets,
)
from keras_transfer.adaptation.methods import AdaptationBatch
from keras_transfer.layers import DomainDiscriminator, GradientReversal
from tests.testing import (
    changed_paths,
    run_model_saving_test,
    run_serialization_test,
    weights_snapshot,
)


def _nets(seed=0):
    keras.utils.set_random_seed(seed)
    features = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(6, activation="relu")],
        name="features",
    )
    head = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(3, activation="softmax")],
        name="head",
    )
    return features, head


METHODS = tuple(methods.REGISTRY)
LOGGED = {"source_accuracy", "target_entropy", "target_top_class_share"}


def _method(name, **kwargs):
    """The registered method, with a small discriminator where it has one."""
    cls = methods.REGISTRY[name]
    if cls.uses_discriminator:
        kwargs.setdefault("discriminator", DomainDiscriminator((5,)))
    if not cls.uses_reversal:
        kwargs.pop("lambda_", None)
    return methods.get(name, **kwargs)


def _model(method="dann", seed=0, lambda_=None, lambda_warmup=True, **kwargs):
    features, head = _nets(seed)
    extra = {} if lambda_ is None else {"lambda_": lambda_}
    if isinstance(method, str):
        method = _method(method, **extra)
    elif isinstance(method, (list, tuple)):
        method = [_method(m, **extra) for m in method]
    elif isinstance(method, dict):
        method = [(_method(m, **extra), w) for m, w in method.items()]
    return DomainAdaptationModel(
        features, head, method=method, lambda_warmup=lambda_warmup, **kwargs
    )


def _data(n_source=16, n_target=12, batch_size=8, target_labels=False):
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(n_source, 4)).astype("float32")
    ys = rng.integers(0, 3, n_source)
    xt = (rng.normal(size=(n_target, 4)) + 1.0).astype("float32")
    yt = rng.integers(0, 3, n_target)
    target = (xt, yt) if target_labels else xt
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = pair_datasets((xs, ys), target, batch_size=batch_size, shuffle=False)
    return data, (xt, yt)


def _compile(model, optimizer=None):
    model.compile(
        optimizer or keras.optimizers.Adam(0.01),
        "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


@pytest.mark.parametrize("method", METHODS)
def test_fit_trains_every_part(method):
    model = _compile(_model(method))
    data, validation = _data()
    model.fit(data.take(1), epochs=1, verbose=0)  # builds
    before = weights_snapshot(model.trainable_weights)
    history = model.fit(data, epochs=2, verbose=0, validation_data=validation)
    logs = history.history
    assert np.all(np.isfinite(logs["loss"]))
    expected = {"loss", "accuracy", "classification_loss", "adaptation_loss",
                method.replace("+", "_") + "_loss", "val_loss", "val_accuracy"}
    expected |= LOGGED
    if method in ("dann", "cdan", "cdan+e"):
        expected.add("domain_accuracy")
    assert set(logs) == expected
    moved = changed_paths(before, model.trainable_weights)
    assert moved == {v.path for v in model.trainable_weights}
    assert model.predict(validation[0], verbose=0).shape == (12, 3)


def test_combined_methods_with_weights():
    model = _compile(_model({"cdan+e": 1.0, "mcc": 0.5, "coral": 0.0}))
    data, _ = _data()
    logs = model.fit(data, epochs=1, verbose=0).history
    for name in ("cdan_e_loss", "mcc_loss", "coral_loss", "domain_accuracy"):
        assert name in logs
    total = logs["cdan_e_loss"][0] + 0.5 * logs["mcc_loss"][0]
    assert logs["adaptation_loss"][0] == pytest.approx(total, rel=1e-4)


@pytest.mark.parametrize("method", ["dann", "cdan+e", "mdd"])
def test_fit_warms_lambda_up_along_the_dann_schedule(method):
    from keras_transfer.callbacks import DANNLambdaScheduler

    data, _ = _data(n_source=32, n_target=32)  # 4 steps per epoch

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            lam = self.model.gradient_reversal.lambda_variable.numpy()
            seen.append(float(lam))

    seen = []
    model = _compile(_model(method, lambda_=0.5))
    model.fit(data, epochs=2, verbose=0, callbacks=[Record()])
    schedule = DANNLambdaScheduler(max_value=0.5)
    np.testing.assert_allclose(
        seen, [schedule.value(step / 8) for step in range(8)], rtol=1e-6
    )
    # Off: lambda_ from the first step. A scheduler of one's own replaces the
    # default one.
    seen.clear()
    model = _compile(_model(method, lambda_=0.5, lambda_warmup=False))
    model.fit(data, epochs=1, verbose=0, callbacks=[Record()])
    assert seen == [0.5] * 4
    seen.clear()
    model = _compile(_model(method, lambda_=0.5))
    mine = DANNLambdaScheduler(max_value=2.0, total_steps=2)
    model.fit(data, epochs=1, verbose=0, callbacks=[mine, Record()])
    np.testing.assert_allclose(
        seen, [mine.value(min(step / 2, 1.0)) for step in range(4)], rtol=1e-6
    )


def test_lambda_stays_when_the_number_of_steps_is_unknown():
    data, _ = _data()
    endless = data.repeat().filter(lambda x, y: True)  # unknown cardinality
    model = _compile(_model("dann", lambda_=0.5))
    with pytest.warns(UserWarning, match="not known"):
        model.fit(endless.take(3), epochs=1, verbose=0)
    assert float(model.gradient_reversal.lambda_variable.numpy()) == 0.5


def test_discriminator_loss_is_bounded():
    # A discriminator that is confidently wrong by far: the loss saturates
    # at the clipped logit (16), it does not grow with the logits.
    model = _model("dann")
    model.build((None, 4))
    logits = model.discriminator.logit
    logits.kernel.assign(np.full(logits.kernel.shape, 1e3, "float32"))
    features = np.abs(np.random.default_rng(0).normal(size=(8, 6))) + 1.0
    # Source (label 1) gets logit +big: right; target (label 0) +big: wrong.
    features = features.astype("float32")
    batch = AdaptationBatch(features[:4], features[4:], None, None,
                            from_logits=False, training=False)
    loss, _ = model.methods[0].compute(batch)
    assert 0.5 * 16.0 - 1e-3 <= float(loss) <= 0.5 * 16.0 + 1e-3


class _BatchSizeRecorder(keras.layers.Layer):
    """Identity that records the static batch size of each training call."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sizes = []

    def call(self, inputs, training=None):
        if training:
            self.sizes.append(inputs.shape[0])
        return inputs


@pytest.mark.parametrize(
    "method, target_labels, expected",
    [("dann", False, 8), ("coral", False, 8), ("mmd", False, 8),
     ("entropy", False, 16), ("cdan", False, 16), ("dann", True, 8)],
)
def test_classifier_runs_on_the_target_only_when_needed(
    method, target_labels, expected
):
    # DANN, CORAL and MMD align features only: the classifier's training pass
    # covers the 8 source samples of a batch (the target_accuracy metric and
    # the diversity logs read an inference pass); methods that read target
    # predictions need all 16.
    features, head = _nets()
    recorder = _BatchSizeRecorder()
    classifier = keras.Sequential([keras.Input((6,)), recorder, head])
    model = _compile(DomainAdaptationModel(
        features, classifier, method=_method(method)))
    data, _ = _data(target_labels=target_labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(data, epochs=1, verbose=0)
    assert recorder.sizes and set(recorder.sizes) == {expected}


def test_reversal_makes_the_features_fight_the_discriminator():
    # With lambda=0 the feature extractor ignores the discriminator; with
    # lambda>0 it gets the reversed discriminator gradient.
    data, _ = _data()
    steps = []
    for lam in (0.0, 1.0):
        model = _compile(
            _model("dann", lambda_=lam, lambda_warmup=False),
            keras.optimizers.SGD(0.1),
        )
        model.fit(data.take(1), epochs=1, verbose=0)
        steps.append([w.numpy() for w in model.feature_extractor.weights])
    assert not np.allclose(steps[0][0], steps[1][0])


def test_inference_model_is_plain(tmp_path):
    model = _compile(_model("mdd"))
    data, (xt, _) = _data()
    model.fit(data, epochs=1, verbose=0)
    inference = model.inference_model()
    kinds = {type(layer) for layer in _compat.flatten_layers(inference)}
    assert GradientReversal not in kinds and DomainDiscriminator not in kinds
    assert model.mdd_classifier not in _compat.flatten_layers(inference)
    np.testing.assert_allclose(
        inference.predict(xt, verbose=0), model.predict(xt, verbose=0), atol=1e-6
    )
    path = str(tmp_path / "inference.keras")
    inference.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        reloaded.predict(xt, verbose=0), model.predict(xt, verbose=0), atol=1e-6
    )


@pytest.mark.parametrize("method", ["cdan+e", ["mdd", "jmmd"]])
def test_keras_saving(method, tmp_path):
    model = _compile(_model(method, lambda_=0.3))
    data, (xt, _) = _data()
    model.fit(data, epochs=1, verbose=0)
    loaded = run_model_saving_test(model, xt, tmp_path)
    assert loaded.method == model.method
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy())
    # Training goes on after loading.
    loaded.fit(data, epochs=1, verbose=0)


def test_serialization():
    features, head = _nets()
    model = DomainAdaptationModel(
        features, head,
        method=[(CDAN(lambda_=0.2, discriminator=DomainDiscriminator(
            (4,), batch_norm=True)), 1.0), ("entropy", 0.1)],
    )
    revived = run_serialization_test(model)
    assert revived.method == {"cdan": 1.0, "entropy": 0.1}
    assert revived.methods[0].lambda_ == 0.2
    assert revived.discriminator.batch_norm


def test_moved_keywords_still_work_with_a_deprecation_warning():
    features, head = _nets()
    with pytest.warns(DeprecationWarning, match="moved to the method objects"):
        model = DomainAdaptationModel(
            features, head, method={"cdan": 1.0, "mdd": 0.5}, lambda_=0.2,
            discriminator=DomainDiscriminator((4,)), mdd_margin=3.0,
            cdan_random_dim=7,
        )
    cdan, mdd = model.methods
    assert (cdan.lambda_, cdan.random_dim, mdd.lambda_, mdd.margin) == (
        0.2, 7, 0.2, 3.0)
    assert cdan.discriminator.hidden_units == (4,)


def test_cdan_random_projection():
    model = _compile(_model(CDAN(random_dim=7,
                                 discriminator=DomainDiscriminator((5,)))))
    data, _ = _data()
    model.fit(data, epochs=1, verbose=0)
    assert model.discriminator.hidden_layers[0].kernel.shape == (7, 5)


def test_target_labels_warn_and_are_not_used_for_training():
    results = []
    for target_labels in (False, True):
        model = _compile(_model("dann"), keras.optimizers.SGD(0.1))
        data, _ = _data(target_labels=target_labels)
        if target_labels:
            with pytest.warns(UserWarning, match="target labels"):
                logs = model.fit(data, epochs=1, verbose=0).history
            assert "target_accuracy" in logs
        else:
            logs = model.fit(data, epochs=1, verbose=0).history
            assert "target_accuracy" not in logs
        results.append([w.numpy() for w in model.weights])
    # With target labels the classifier also runs on the target half (for the
    # metric), a larger matmul whose rounding differs in the last bits.
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)


def test_any_optimizer_including_a_wrapper():
    opt = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(0.01))
    model = _compile(_model("dann"), opt)
    data, _ = _data()
    before = weights_snapshot(model.feature_extractor.trainable_weights)
    model.fit(data, epochs=1, verbose=0)
    assert changed_paths(before, model.feature_extractor.trainable_weights)


def test_lambda_scheduler_drives_the_reversal_layer():
    from keras_transfer.callbacks import DANNLambdaScheduler

    model = _compile(_model("dann", lambda_=0.0))
    data, _ = _data()
    scheduler = DANNLambdaScheduler(max_value=0.5)
    model.fit(data, epochs=2, verbose=0, callbacks=[scheduler])
    value = float(model.gradient_reversal.lambda_variable.numpy())
    assert value == pytest.approx(scheduler.value(3 / 4))


@pytest.mark.parametrize("method", ["dann", "coral"])
def test_under_mirrored_strategy_matches_single_device(method, strategy):
    data, _ = _data(n_source=16, n_target=16, batch_size=8)
    single = _compile(_model(method, seed=4), keras.optimizers.SGD(0.05))
    single.fit(data, epochs=1, verbose=0)
    with strategy.scope():
        mirrored = _compile(_model(method, seed=4), keras.optimizers.SGD(0.05))
    logs = mirrored.fit(data, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0])
    if method == "dann":
        # Per-sample losses: the replicas' means add up to the global one.
        for a, b in zip(single.weights, mirrored.weights):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)


def test_bad_input():
    features, head = _nets()
    with pytest.raises(ValueError, match="Known methods: dann, cdan"):
        DomainAdaptationModel(features, head, method="dan")
    with pytest.raises(ValueError, match="`lambda_` must be >= 0"):
        DomainAdaptationModel(features, head, method=DANN(lambda_=-1.0))
    with pytest.raises(ValueError, match="`lambda_` must be >= 0"):
        MDD(lambda_=-1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match="`lambda_` must be >= 0"):
            DomainAdaptationModel(features, head, method="coral", lambda_=-1.0)
    with pytest.raises(ValueError, match="`method` weights"):
        DomainAdaptationModel(features, head, method={"mmd": -1.0})
    with pytest.raises(ValueError, match="only one of"):
        DomainAdaptationModel(features, head, method=["dann", "cdan"])
    with pytest.raises(ValueError, match="`classifier`"):
        DomainAdaptationModel(features, "head")

    # Source and target of different feature shapes.
    model = _compile(_model("coral"))
    xs, xt = np.zeros((8, 4), "float32"), np.zeros((8, 5), "float32")
    with pytest.raises(ValueError, match="same feature shape"):
        model.fit({"source": xs, "target": xt}, np.zeros(8), batch_size=4,
                  verbose=0)
    # Unpaired inputs.
    with pytest.raises(ValueError, match="'source': x_source") as error:
        model.fit(xs, np.zeros(8), batch_size=4, verbose=0)
    assert "Received: x = a tensor of shape (" in str(error.value), error.value
    # A batch of one sample for a loss that needs two.
    one = tf.data.Dataset.from_tensors(
        ({"source": np.zeros((1, 4), "float32"),
          "target": np.zeros((1, 4), "float32")}, np.zeros((1,)))
    )
    with pytest.raises(ValueError, match="batch_size=1"):
        model.fit(one, epochs=1, verbose=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cdan_random_dim": "abc"}, r"`cdan_random_dim` must be a positive integer"),
        ({"cdan_random_dim": 0}, r"Received: cdan_random_dim=0$"),
        ({"cdan_random_dim": 8.5}, r"Received: cdan_random_dim=8.5$"),
        ({"mdd_margin": "x"}, r"`mdd_margin` must be a finite number > 0"),
        ({"mdd_margin": -1}, r"Received: mdd_margin=-1$"),
        ({"mdd_margin": -1, "method": "mdd"}, r"Received: mdd_margin=-1$"),
    ],
)
def test_bad_method_options_name_the_argument(kwargs, match):
    features, head = _nets()
    kwargs = {"method": "dann", **kwargs}
    with pytest.raises(ValueError, match=match):
        DomainAdaptationModel(features, head, **kwargs)


def test_mdd_adversary_starts_at_the_classifier_and_then_moves():
    model = _compile(_model("mdd"))
    data, _ = _data()
    model.build({"source": (None, 4), "target": (None, 4)})
    for adv, main in zip(model.mdd_classifier.weights, model.classifier.weights):
        np.testing.assert_allclose(adv.numpy(), main.numpy(), rtol=0.06, atol=1e-6)
    before = weights_snapshot(model.mdd_classifier.weights)
    model.fit(data, epochs=1, verbose=0)
    assert changed_paths(before, model.mdd_classifier.weights)


def test_mdd_adversary_copy_happens_once_when_built_inside_fit():
    model = _compile(_model("mdd"), keras.optimizers.SGD(0.01))
    data, _ = _data()
    model.fit(data.take(1), epochs=1, verbose=0)  # built while tracing
    for w in model.classifier.weights:
        w.assign(np.zeros(w.shape, "float32"))
    model.fit(data.take(1), epochs=1, verbose=0)
    kernel = model.mdd_classifier.weights[0].numpy()
    assert np.abs(kernel).max() > 0.1  # not copied from the zeroed classifier
