"""Drop-in use on the model the user already has.

The Keras transfer-learning guide's script shape: a pretrained base model
(`keras.applications`, keras-hub, keras-cv or the user's own), set
non-trainable by the user, called with `training=False` inside a functional,
Sequential or subclassed model with a new head; compile; fit. One component
of ours is added and nothing else changes.
"""

import keras
import numpy as np
import pytest

import keras_transfer
from keras_transfer.backbones import (
    Backbone,
    GroupedLayer,
    find_backbone,
    groups_of,
)
from keras_transfer.callbacks import GradualUnfreezing
from keras_transfer.optimizers import DiscriminativeLR
from tests.testing import run_model_saving_test


def images(n=16, size=32, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, size=(n, size, size, 3)).astype("float32")
    return x, np.arange(n) % classes


def small_base(name="base"):
    """A small 'pretrained' functional CNN with BatchNorm: three stages."""
    inputs = keras.Input((32, 32, 3))
    x = inputs
    for i, filters in enumerate((4, 8, 8)):
        x = keras.layers.Conv2D(filters, 3, strides=2, name=f"c{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"r{i}")(x)
    return keras.Model(inputs, x, name=name)


def _keras_cv():
    """keras-cv, or a skip on a Keras that keras-cv itself cannot import on.

    keras-cv 0.9, its last release, imports `keras.src` internals that Keras
    3.16 removed (`keras.src.backend.tensorflow.convert_to_numpy`); on Keras
    3.15 it must import, and these tests run.
    """
    try:
        import keras_cv
    except ImportError as error:
        major, minor = (int(p) for p in keras.version().split(".")[:2])
        if (major, minor) >= (3, 16):
            pytest.skip(f"keras-cv does not import on Keras {keras.version()}: {error}")
        raise
    return keras_cv


def guide_functional(base, classes=3):
    base.trainable = False
    inputs = keras.Input((32, 32, 3))
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, name="head")(x)
    return keras.Model(inputs, outputs)


def guide_sequential(base, classes=3):
    base.trainable = False
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            base,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes, name="head"),
        ]
    )


class Classifier(keras.Model):
    """A subclassed model that holds the pretrained base as an attribute."""

    def __init__(self, base, classes=3, **kwargs):
        super().__init__(**kwargs)
        self.base = base
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(classes, name="head")

    def call(self, x, training=False):
        return self.head(self.pool(self.base(x, training=False)))


def guide_subclassed(base, classes=3):
    base.trainable = False
    model = Classifier(base, classes)
    model(np.zeros((1, 32, 32, 3), "float32"))
    return model


def compile_(model, optimizer=None):
    model.compile(
        optimizer=optimizer or keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def snapshot(layer):
    return [keras.ops.convert_to_numpy(v) for v in layer.weights]


def changed(before, layer):
    return [
        not np.array_equal(b, keras.ops.convert_to_numpy(v))
        for b, v in zip(before, layer.weights)
    ]


# -- the guide's script with one component added -------------------------------


def test_guide_script_keras_applications_gradual_unfreezing():
    base = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3),
        include_top=False,
        weights=None,
        alpha=0.75,
        minimalistic=True,
    )
    model = guide_functional(base)
    compile_(model)
    stem = base.get_layer("conv")
    top = base.get_layer("conv_1")
    stem_before, top_before = snapshot(stem), snapshot(top)
    x, y = images()
    # The one added line: the callback, no backbone named.
    unfreezing = GradualUnfreezing(schedule={1: 1, 2: 4}, freeze_bn=True)
    history = model.fit(x, y, epochs=3, batch_size=8, callbacks=[unfreezing], verbose=0)
    assert history.history["unfrozen_groups"] == [0, 1, 4]
    assert unfreezing.backbone.layer is base
    assert unfreezing.backbone.family == "MobileNetV3"
    assert any(changed(top_before, top)) and any(changed(stem_before, stem))
    # freeze_bn: BatchNorm stayed in inference mode (moving statistics kept).
    bn = base.get_layer("conv_bn")
    assert not bn.trainable


@pytest.mark.parametrize("shape", ["functional", "sequential", "subclassed"])
def test_guide_script_shapes_discriminative_lr_and_unfreezing(shape):
    base = small_base()
    build = {
        "functional": guide_functional,
        "sequential": guide_sequential,
        "subclassed": guide_subclassed,
    }[shape]
    model = build(base)
    optimizer = DiscriminativeLR(
        keras.optimizers.Adam(1e-2), layer_decay=0.5, groups=base
    )
    compile_(model, optimizer)
    before = {name: snapshot(base.get_layer(name)) for name in ("c0", "c2")}
    x, y = images()
    history = model.fit(
        x,
        y,
        epochs=3,
        batch_size=8,
        callbacks=[GradualUnfreezing(every=1)],
        verbose=0,
    )
    assert history.history["unfrozen_groups"] == [0, 1, 2]
    # Groups unfroze from the top: c2 (top group) and c1 trained, c0 did not.
    assert any(changed(before["c2"], base.get_layer("c2")))
    assert not any(changed(before["c0"], base.get_layer("c0")))
    factors = optimizer.get_multipliers()
    by_layer = {path.split("/")[-2]: f for path, f in factors.items()}
    assert by_layer["c2"] == pytest.approx(1.0)
    assert by_layer["c0"] == pytest.approx(0.25)
    assert by_layer["head"] == pytest.approx(1.0)


def test_fine_tune_on_the_users_model_finds_the_base():
    base = small_base()
    model = guide_functional(base)
    before = snapshot(base.get_layer("c2"))
    x, y = images()
    history = keras_transfer.fine_tune(
        model, train_data=(x, y), epochs=4, batch_size=8, verbose=0
    )
    assert history.history["unfrozen_groups"] == [0, 1, 2, 3]
    assert any(changed(before, base.get_layer("c2")))
    # fine_tune's default policy: BatchNorm in inference mode.
    assert not base.get_layer("bn2").trainable


def test_fine_tune_takes_the_base_model_positionally():
    base = small_base()
    model = guide_sequential(base)
    x, y = images()
    history = keras_transfer.fine_tune(
        model, base, (x, y), epochs=2, batch_size=8, verbose=0
    )
    assert history.history["unfrozen_groups"][-1] == 1


def test_fine_tune_data_in_the_backbone_slot_is_explained():
    model = guide_functional(small_base())
    with pytest.raises(ValueError, match="second argument is `backbone`"):
        keras_transfer.fine_tune(model, images())


def test_keras_hub_backbone_in_a_functional_model():
    bert = _raw_bert()
    bert.trainable = False
    inputs = {
        k: keras.Input(v.shape[1:], dtype=v.dtype, name=k)
        for k, v in bert.input.items()
    }
    pooled = bert(inputs)["pooled_output"]
    outputs = keras.layers.Dense(2, name="head")(pooled)
    model = keras.Model(inputs, outputs)
    compile_(model)
    view = find_backbone(model)
    assert view.layer is bert and view.family == "BERT"
    assert view.group_names == ["embeddings", "layer_0", "pooler"]
    before = snapshot(bert.get_layer("transformer_layer_0"))
    data = {
        "token_ids": np.array([[2, 5, 7, 3, 0, 0]] * 8),
        "segment_ids": np.zeros((8, 6), "int32"),
        "padding_mask": np.array([[1, 1, 1, 1, 0, 0]] * 8),
    }
    history = model.fit(
        data,
        np.arange(8) % 2,
        epochs=3,
        batch_size=4,
        callbacks=[GradualUnfreezing(every=1)],
        verbose=0,
    )
    assert history.history["unfrozen_groups"] == [0, 1, 2]
    assert any(changed(before, bert.get_layer("transformer_layer_0")))


def _raw_bert():
    from keras_transfer.utils import require

    keras_hub = require("keras_hub")
    return keras_hub.models.BertBackbone(
        vocabulary_size=8,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=6,
    )


@pytest.mark.parametrize("family", ["KerasCVResNet", "CSPDarkNet"])
def test_keras_cv_backbone_fine_tunes_through_our_components(family):
    keras_cv = _keras_cv()
    if family == "KerasCVResNet":
        base = keras_cv.models.ResNetBackbone(
            stackwise_filters=[4, 8],
            stackwise_blocks=[1, 1],
            stackwise_strides=[1, 2],
            input_shape=(32, 32, 3),
            include_rescaling=True,
        )
        expected = ["stem", "stage_1", "stage_2"]
    else:
        base = keras_cv.models.CSPDarkNetBackbone(
            stackwise_channels=[4, 8],
            stackwise_depth=[1, 1],
            input_shape=(32, 32, 3),
            include_rescaling=True,
        )
        expected = ["stem", "stage_1", "stage_2"]
    view = groups_of(base)
    assert view.family == family
    assert view.group_names == expected
    model = guide_functional(base)
    x, y = images()
    before = snapshot(view.get_group("stage_2").layers[0])
    history = keras_transfer.fine_tune(
        model, base, (x, y), epochs=4, batch_size=8, verbose=0
    )
    assert history.history["unfrozen_groups"] == [0, 1, 2, 3]
    assert any(changed(before, view.get_group("stage_2").layers[0]))


# -- grouping in place -------------------------------------------------------


def test_groups_of_shares_layers_and_variables():
    base = small_base()
    view = groups_of(base)
    assert isinstance(view, GroupedLayer)
    assert view.layer is base
    group_layers = [layer for g in view.groups for layer in g.layers]
    assert all(any(layer is b for b in base.layers) for layer in group_layers)
    ids = {id(v) for g in view.groups for v in g.variables}
    assert ids == {id(v) for v in base.variables}
    assert view.group_of(base.get_layer("c0").kernel) == view.group_names[0]
    # A Backbone is its own view.
    backbone = Backbone.from_model(small_base("other"))
    assert groups_of(backbone) is backbone


def test_user_set_trainable_false_does_not_stop_unfreezing():
    base = small_base()
    base.trainable = False
    view = groups_of(base)
    view.freeze_to(1)
    assert base.trainable
    assert view.trainable_group_names == [view.group_names[-1]]
    view.unfreeze(freeze_bn=True)
    assert all(not base.get_layer(f"bn{i}").trainable for i in range(3))
    assert all(base.get_layer(f"c{i}").trainable for i in range(3))


def test_several_candidates_is_an_error_listing_them():
    a, b = small_base("first"), small_base("second")
    inputs = keras.Input((32, 32, 3))
    merged = keras.layers.Concatenate()(
        [keras.layers.GlobalAveragePooling2D()(m(inputs)) for m in (a, b)]
    )
    model = keras.Model(inputs, keras.layers.Dense(2)(merged))
    with pytest.raises(ValueError, match="2 candidates.*'first'.*'second'"):
        find_backbone(model)
    compile_(model)
    x, y = images()
    with pytest.raises(ValueError, match="candidates"):
        model.fit(x, y % 2, epochs=1, callbacks=[GradualUnfreezing()], verbose=0)


def test_no_candidate_is_an_error_and_augmentation_is_not_a_candidate():
    augment = keras.Sequential([keras.layers.RandomFlip()], name="augment")
    inputs = keras.Input((32, 32, 3))
    x = augment(inputs)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(x))
    flat = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError, match="no nested model with weights"):
        find_backbone(flat)
    base = small_base()
    x = base(augment(inputs))
    model = keras.Model(
        inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    )
    assert find_backbone(model).layer is base


def test_bad_backbone_names_the_argument():
    model = guide_functional(small_base())
    with pytest.raises(ValueError, match="`backbone` must be a Keras layer"):
        keras_transfer.fine_tune(model, "mobilenet", images())
    with pytest.raises(ValueError, match="`groups` must be a Keras layer"):
        DiscriminativeLR(keras.optimizers.Adam(), groups=["c0"])
    late = keras.layers.Dense(2, name="late")
    unfreezing = GradualUnfreezing(late)  # not built yet: checked in fit
    model = keras.Sequential([late])
    model.compile(optimizer="adam", loss="mse")
    with pytest.raises(ValueError, match="`backbone` 'late' is not built"):
        model.fit(
            np.ones((4, 3)), np.ones((4, 2)), callbacks=[unfreezing], verbose=0
        )


# -- regex multipliers against every variable of the model ------------------


def test_regex_on_a_group_the_schedule_never_unfreezes_is_accepted():
    base = small_base()
    model = guide_functional(base)
    optimizer = DiscriminativeLR(
        keras.optimizers.Adam(1e-2),
        multipliers={"c0/": 0.1, "c1/": 0.3, "c2/": 0.6},
    )
    compile_(model, optimizer)
    before = snapshot(base.get_layer("c0"))
    x, y = images()
    stages = groups_of(base, groups={f"s{i}": f"c{i}|bn{i}" for i in range(3)})
    # Two of three groups ever unfreeze: c0 is never trained.
    history = model.fit(
        x,
        y,
        epochs=3,
        batch_size=8,
        callbacks=[GradualUnfreezing(stages, schedule=[1, 2])],
        verbose=0,
    )
    assert history.history["unfrozen_groups"] == [0, 1, 2]
    assert not any(changed(before, base.get_layer("c0")))
    factors = {p.split("/")[-2]: f for p, f in optimizer.get_multipliers().items()}
    assert factors["c1"] == pytest.approx(0.3)
    assert "c0" not in factors


def test_regex_on_a_frozen_layer_in_a_plain_fit_is_accepted():
    base = small_base()
    model = guide_functional(base)
    optimizer = DiscriminativeLR(keras.optimizers.Adam(), multipliers={"c0/": 0.1})
    compile_(model, optimizer)
    x, y = images()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert all("c0" not in p for p in optimizer.get_multipliers())


def test_regex_that_matches_nothing_in_the_model_is_still_an_error():
    base = small_base()
    model = guide_functional(base)
    optimizer = DiscriminativeLR(keras.optimizers.Adam(), multipliers={"cO/": 0.1})
    compile_(model, optimizer)
    x, y = images()
    with pytest.raises(ValueError, match="regex 'cO/' matches no variable of the"):
        model.fit(x, y, epochs=1, callbacks=[GradualUnfreezing(every=1)], verbose=0)
    unbound = DiscriminativeLR(keras.optimizers.Adam(), multipliers={"cO/": 0.1})
    with pytest.raises(ValueError, match="matches no variable the optimizer"):
        unbound.build(model.trainable_variables)


# -- the usual proofs ----------------------------------------------------------


def test_drop_in_model_saves_and_loads(tmp_path):
    base = small_base()
    model = guide_functional(base)
    optimizer = DiscriminativeLR(
        keras.optimizers.Adam(1e-3), layer_decay=0.5, groups=base
    )
    compile_(model, optimizer)
    x, y = images()
    model.fit(x, y, epochs=2, callbacks=[GradualUnfreezing()], verbose=0)
    run_model_saving_test(model, x[:4], tmp_path)


def test_drop_in_under_mirrored_strategy(strategy):
    with strategy.scope():
        base = small_base()
        model = guide_functional(base)
        optimizer = DiscriminativeLR(
            keras.optimizers.Adam(1e-2), layer_decay=0.5, groups=base
        )
        compile_(model, optimizer)
    before = snapshot(base.get_layer("c2"))
    x, y = images()
    history = model.fit(
        x, y, epochs=2, batch_size=8, callbacks=[GradualUnfreezing()], verbose=0
    )
    assert history.history["unfrozen_groups"] == [0, 1]
    assert any(changed(before, base.get_layer("c2")))


# -- the other places a backbone is taken ------------------------------------


def test_keras_hub_task_names_its_backbone():
    from keras_transfer.utils import require

    keras_hub = require("keras_hub")
    bert = _raw_bert()
    task = keras_hub.models.BertTextClassifier(
        backbone=bert, num_classes=2, preprocessor=None
    )
    task.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    assert find_backbone(task).layer is bert
    data = {
        "token_ids": np.array([[2, 5, 7, 3, 0, 0]] * 8),
        "segment_ids": np.zeros((8, 6), "int32"),
        "padding_mask": np.array([[1, 1, 1, 1, 0, 0]] * 8),
    }
    before = snapshot(bert.get_layer("transformer_layer_0"))
    history = task.fit(
        data,
        np.arange(8) % 2,
        epochs=2,
        batch_size=4,
        callbacks=[GradualUnfreezing(schedule={1: 2})],
        verbose=0,
    )
    assert history.history["unfrozen_groups"] == [0, 2]
    assert any(changed(before, bert.get_layer("transformer_layer_0")))


def test_domain_adaptation_model_unfreezes_its_feature_extractor():
    from keras_transfer.adaptation import DomainAdaptationModel, pair_datasets

    base = small_base()
    base.trainable = False
    features = keras.Sequential(
        [keras.Input((32, 32, 3)), base, keras.layers.GlobalAveragePooling2D()],
        name="features",
    )
    classifier = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(3, activation="softmax")],
        name="classifier",
    )
    model = DomainAdaptationModel(features, classifier, method="coral")
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    assert find_backbone(model).layer is features
    xs, ys = images(16)
    xt, _ = images(16, seed=1)
    data = pair_datasets((xs, ys), xt, batch_size=8, shuffle=False)
    before = snapshot(base.get_layer("c2"))
    history = model.fit(
        data, epochs=2, callbacks=[GradualUnfreezing(every=1)], verbose=0
    )
    assert history.history["unfrozen_groups"] == [0, 1]
    assert any(changed(before, base.get_layer("c2")))


def test_extract_features_and_head_on_the_users_base():
    from keras_transfer.backbones import extract_features, fit_head_on_features

    base = small_base()
    x, y = images(12)
    features = extract_features(base, x, batch_size=4, verbose=0)
    expected = keras.ops.convert_to_numpy(base(x)).mean(axis=(1, 2))
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    # A subclassed model without known inputs runs as it is, then pooled.
    subclassed = Classifier(small_base("inner"), classes=3)
    out = extract_features(subclassed, x, batch_size=4, verbose=0)
    assert out.shape == (12, 3)
    model = fit_head_on_features(
        base, x, y, num_classes=3, epochs=2, batch_size=4, verbose=0
    )
    assert tuple(model(x[:2]).shape) == (2, 3)


def test_rank_backbones_takes_a_cut_inside_a_nested_model_and_subclassed():
    from keras_transfer.transferability import rank_backbones

    base = small_base()
    model = guide_functional(base)
    x, y = images(24)
    table = rank_backbones(
        {
            "nested_cut": (model, "c1"),
            "subclassed": Classifier(small_base("inner"), classes=3),
        },
        (x, y),
        verbose=0,
    )
    rows = {row["name"]: row for row in table.to_dict("records")}
    assert rows["nested_cut"]["num_features"] == 8
    assert rows["subclassed"]["num_features"] == 3
    with pytest.raises(ValueError, match="`cut` layer 'nope' not found"):
        rank_backbones({"m": (model, "nope")}, (x, y), verbose=0)


def _keras_cv_resnet():
    keras_cv = _keras_cv()
    return keras_cv.models.ResNetBackbone(
        stackwise_filters=[4, 8],
        stackwise_blocks=[1, 1],
        stackwise_strides=[1, 2],
        input_shape=(32, 32, 3),
        include_rescaling=True,
    )


def _keras_application():
    return keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), include_top=False, weights=None, alpha=0.35
    )


@pytest.mark.parametrize(
    "shape, make_base",
    [
        ("sequential", _keras_application),
        ("subclassed", _keras_cv_resnet),
    ],
)
def test_guide_script_other_shapes_with_real_bases(shape, make_base):
    base = make_base()
    model = {"sequential": guide_sequential, "subclassed": guide_subclassed}[shape](
        base
    )
    compile_(
        model,
        DiscriminativeLR(keras.optimizers.Adam(1e-3), layer_decay=0.7, groups=base),
    )
    view = groups_of(base)
    top = next(g for g in reversed(view.groups) if g.variables).variables[0]
    before = keras.ops.convert_to_numpy(top)
    x, y = images()
    history = model.fit(
        x,
        y,
        epochs=2,
        batch_size=8,
        callbacks=[GradualUnfreezing(schedule={1: 2}, freeze_bn=True)],
        verbose=0,
    )
    assert history.history["unfrozen_groups"] == [0, 2]
    assert not np.array_equal(before, keras.ops.convert_to_numpy(top))


def test_one_callback_serves_two_models():
    unfreezing = GradualUnfreezing(every=1)
    x, y = images()
    for name in ("first", "second"):
        base = small_base(name)
        model = guide_functional(base)
        compile_(model)
        before = snapshot(base.get_layer("c2"))
        model.fit(x, y, epochs=2, batch_size=8, callbacks=[unfreezing], verbose=0)
        assert unfreezing.backbone.layer is base
        assert any(changed(before, base.get_layer("c2")))
