"""Tests for `fine_tune(learning_rate="find")` and `keep_head_weights`."""

import importlib

import numpy as np
import pytest

from keras_transfer import _compat
from keras_transfer.averaging import interpolate
from keras_transfer.fine_tune import fine_tune
from keras_transfer.lr_finder import LRFinderResult
from keras_transfer.schedules import OneCycle
from tests.test_fine_tune import data, make_model


def test_found_rate_is_used_and_recorded(capsys):
    model, backbone = make_model()
    x, y = data()
    history = fine_tune(
        model, backbone, (x, y), epochs=3, learning_rate="find", verbose=1
    )
    result = history.lr_find
    assert isinstance(result, LRFinderResult) and result.steps >= 10
    found = history.params["learning_rate"]
    assert found == pytest.approx(result.suggestion("minimum", divisor=3))
    assert found == pytest.approx(result.suggestion("minimum") * 10 / 3)
    assert 1e-7 <= found <= 10.0
    # The one-cycle schedule peaks at the found rate.
    schedule = _compat.learning_rate_object(model.optimizer)
    assert isinstance(schedule, OneCycle)
    assert schedule.max_lr == pytest.approx(found)
    out = capsys.readouterr().out
    assert f"learning_rate='find' chose {found:.3g}" in out
    # The range test left no trace: the fit starts from the initial weights.
    assert history.history["unfrozen_groups"] == [0, 1, 2]


def test_range_test_runs_on_the_unfrozen_model(monkeypatch):
    # The found rate is the peak of the schedule, when the backbone trains:
    # the range test must see every group the schedule unfreezes, with
    # BatchNorm frozen as the fit keeps it.
    module = importlib.import_module("keras_transfer.fine_tune")

    seen = []

    def spy(model, *args, **kwargs):
        seen.append(sorted(v.path for v in model.trainable_weights))
        return real(model, *args, **kwargs)

    real = module.lr_find
    monkeypatch.setattr(module, "lr_find", spy)
    model, backbone = make_model()
    x, y = data()
    fine_tune(model, backbone, (x, y), epochs=4, learning_rate="find", verbose=0)
    assert len(seen) == 1
    names = {path.split("/")[-2] for path in seen[0]}
    assert {"low", "mid", "high", "head"} <= names
    assert "high_bn" not in names  # frozen BatchNorm, as in the fit


def test_given_rate_is_recorded_and_find_needs_compile():
    model, backbone = make_model()
    x, y = data()
    history = fine_tune(
        model, backbone, (x, y), epochs=2, learning_rate=2e-3, verbose=0
    )
    assert history.params["learning_rate"] == 2e-3
    assert not hasattr(history, "lr_find")
    model.compile(optimizer="adam", loss="mse")
    before = model.get_weights()
    with pytest.raises(ValueError, match="`learning_rate='find'` needs `compile=True`"):
        fine_tune(model, backbone, (x, y), learning_rate="find", compile=False)
    with pytest.raises(ValueError, match="`learning_rate` must be a positive float"):
        fine_tune(model, backbone, (x, y), learning_rate="fast")
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_keep_head_weights_records_the_end_of_the_head_phase():
    model, backbone = make_model()
    pretrained = [w.copy() for w in backbone.get_weights()]
    head_before = model.get_layer("head").get_weights()[0].copy()
    x, y = data()
    history = fine_tune(
        model,
        backbone,
        (x, y),
        epochs=4,
        head_epochs=2,
        verbose=0,
        keep_head_weights=True,
        learning_rate=1e-2,
    )
    head = history.head_weights
    assert len(head) == len(model.get_weights())
    probe = make_model()[0]
    probe.set_weights(head)
    # The backbone is still the pretrained one; the head has trained.
    probe_backbone = probe.layers[1]
    for a, b in zip(pretrained, probe_backbone.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(probe.get_layer("head").get_weights()[0], head_before)
    end = model.get_weights()
    interpolate(model, head, end, 0.5)
    model.fit(x, y, epochs=1, verbose=0)


def test_keep_head_weights_without_head_phase():
    model, backbone = make_model()
    before = model.get_weights()
    x, y = data()
    history = fine_tune(
        model,
        backbone,
        (x, y),
        epochs=2,
        head_epochs=0,
        verbose=0,
        keep_head_weights=True,
    )
    for a, b in zip(before, history.head_weights):
        np.testing.assert_array_equal(a, b)
