"""Tests for `Backbone` and `LayerGroup`: groups, freezing, saving, cutting."""

import keras
import numpy as np
import pytest

from keras_transfer.backbones import Backbone, LayerGroup
from tests.testing import (
    changed_paths,
    run_model_saving_test,
    run_serialization_test,
    weights_snapshot,
)


def tiny_cnn(name="tiny"):
    """Three conv blocks with BatchNorm, then global pooling: 3 stages."""
    inputs = keras.Input((8, 8, 3), name="image")
    x = inputs
    for i, filters in enumerate((4, 8, 8)):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"s{i}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"s{i}_bn")(x)
        x = keras.layers.ReLU(name=f"s{i}_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, x, name=name)


STAGES = {"stage_0": "s0_.*", "stage_1": "s1_.*", "stage_2": "s2_.*"}


def with_head(backbone, num_classes=3):
    inputs = keras.Input(backbone.input.shape[1:])
    features = backbone(inputs)
    outputs = keras.layers.Dense(num_classes, name="head")(features)
    return keras.Model(inputs, outputs)


def data(n=16, num_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 3)).astype("float32")
    y = rng.integers(0, num_classes, size=(n,))
    return x, y


def covers_every_weight_once(backbone):
    ids = [id(v) for g in backbone.groups for v in g.variables]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(v) for v in backbone.weights}


# ---------------------------------------------------------------------------
# Groups
# ---------------------------------------------------------------------------
def test_regex_groups_ordered_and_complete():
    backbone = Backbone.from_model(tiny_cnn(), groups=STAGES)
    assert backbone.group_names == ["stage_0", "stage_1", "stage_2"]
    # The weightless pooling layer joins the group before it.
    assert [layer.name for layer in backbone.groups[-1].layers][-1] == "pool"
    covers_every_weight_once(backbone)
    conv = backbone.get_layer("s1_conv")
    assert backbone.group_of(conv.kernel) == "stage_1"
    assert backbone.group_of(conv.kernel.path) == "stage_1"
    assert backbone.group_of(keras.Variable(1.0)) is None


def test_regex_groups_are_sorted_input_to_output():
    spec = {"top": "s2_.*", "bottom": ["s0_.*", "s1_.*"]}
    backbone = Backbone.from_model(tiny_cnn(), groups=spec)
    assert backbone.group_names == ["bottom", "top"]


def test_callable_groups():
    backbone = Backbone.from_model(
        tiny_cnn(), groups=lambda layer: "early" if layer.name[1] == "0" else "late"
    )
    assert backbone.group_names == ["early", "late"]
    covers_every_weight_once(backbone)


def test_generic_split_balances_parameters():
    inputs = keras.Input((16,))
    x = inputs
    for i in range(12):
        x = keras.layers.Dense(16, name=f"d{i}")(x)
    backbone = Backbone(inputs, x, num_groups=4)
    assert backbone.family is None
    assert backbone.group_names == ["group_0", "group_1", "group_2", "group_3"]
    assert [len(g.layers) for g in backbone.groups] == [3, 3, 3, 3]
    covers_every_weight_once(backbone)
    # Layer order inside and across groups follows the graph.
    names = [layer.name for g in backbone.groups for layer in g.layers]
    assert names == [f"d{i}" for i in range(12)]


def test_generic_split_uneven_sizes():
    inputs = keras.Input((4,))
    x = keras.layers.Dense(4, name="small")(inputs)
    x = keras.layers.Dense(256, name="big")(x)
    x = keras.layers.Dense(4, name="small2")(x)
    backbone = Backbone(inputs, x, num_groups=2)
    sizes = [g.count_params() for g in backbone.groups]
    assert sizes == [20 + 1280, 1028]
    # More groups than weighted layers: one group per weighted layer.
    assert len(Backbone(inputs, x, num_groups=10).groups) == 3


def test_family_recognised_from_layer_names():
    app = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), include_top=False, weights=None, alpha=0.35
    )
    backbone = Backbone.from_model(app)
    assert backbone.family == "MobileNetV2"
    assert backbone.group_names == ["stem", "stage_1", "stage_2", "stage_3", "stage_4"]
    covers_every_weight_once(backbone)


def test_summary_groups_prints_table():
    backbone = Backbone.from_model(tiny_cnn(), groups=STAGES)
    backbone.freeze_to(1)
    lines = []
    backbone.summary_groups(print_fn=lines.append)
    text = "\n".join(lines)
    for name in STAGES:
        assert name in text
    total = sum(g.count_params() for g in backbone.groups)
    assert f"Total parameters: {total:,}" in text
    row = next(line for line in text.splitlines() if line.startswith("stage_0"))
    assert row.split()[-1] == "0"  # frozen
    row = next(line for line in text.splitlines() if line.startswith("stage_2"))
    assert row.split()[-1] != "0"


# ---------------------------------------------------------------------------
# Freezing
# ---------------------------------------------------------------------------
def test_freeze_unfreeze_freeze_to():
    backbone = Backbone.from_model(tiny_cnn(), groups=STAGES)
    backbone.freeze()
    assert backbone.trainable_group_names == []
    assert backbone.trainable_weights == []
    backbone.freeze_to(2)
    assert backbone.trainable_group_names == ["stage_1", "stage_2"]
    backbone.freeze_to(-1)
    assert backbone.trainable_group_names == ["stage_1", "stage_2"]
    backbone.freeze_to(-3)
    assert backbone.trainable_group_names == []
    backbone.unfreeze()
    assert backbone.trainable_group_names == ["stage_0", "stage_1", "stage_2"]
    assert len(backbone.trainable_weights) == 12  # conv k+b, bn gamma+beta
    backbone.trainable = False
    assert backbone.trainable_group_names == []
    backbone.freeze_to(1)
    assert backbone.trainable_group_names == ["stage_2"]


def test_batchnorm_policy():
    backbone = Backbone.from_model(tiny_cnn(), groups=STAGES)
    backbone.freeze(train_bn=True)
    trainable = {v.path for v in backbone.trainable_weights}
    assert trainable == {f"s{i}_bn/{w}" for i in range(3) for w in ("gamma", "beta")}
    assert backbone.trainable_group_names == []
    backbone.unfreeze(freeze_bn=True)
    trainable = {v.path for v in backbone.trainable_weights}
    assert trainable == {f"s{i}_conv/{w}" for i in range(3) for w in ("kernel", "bias")}
    assert backbone.trainable_group_names == ["stage_0", "stage_1", "stage_2"]
    assert not backbone.get_layer("s0_bn").trainable


def test_fit_updates_only_trainable_groups():
    backbone = Backbone.from_model(tiny_cnn(), groups=STAGES)
    backbone.freeze_to(1)
    model = with_head(backbone)
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = weights_snapshot(backbone.weights)
    x, y = data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    changed = {backbone.group_of(p) for p in changed_paths(before, backbone.weights)}
    assert changed == {"stage_2"}


def test_fit_freeze_bn_keeps_statistics_train_bn_moves_them():
    x, y = data()
    backbone = Backbone.from_model(tiny_cnn(), groups=STAGES)
    backbone.unfreeze(freeze_bn=True)
    model = with_head(backbone)
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = weights_snapshot(backbone.weights)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    changed = changed_paths(before, backbone.weights)
    assert not any("_bn/" in p for p in changed)
    assert "s0_conv/kernel" in changed

    backbone = Backbone.from_model(tiny_cnn("tiny2"), groups=STAGES)
    backbone.freeze(train_bn=True)
    model = with_head(backbone)
    model.compile(
        optimizer="sgd",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = weights_snapshot(backbone.weights)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    changed = changed_paths(before, backbone.weights)
    assert changed and all("_bn/" in p for p in changed)
    assert "s0_bn/moving_mean" in changed and "s0_bn/gamma" in changed


# ---------------------------------------------------------------------------
# Cutting and flattening
# ---------------------------------------------------------------------------
def test_from_model_cut_by_name_and_index():
    model = tiny_cnn()
    backbone = Backbone.from_model(model, cut="s1_relu", groups=None, num_groups=2)
    assert backbone.output.shape == (None, 8, 8, 8)
    assert "s2_conv" not in [layer.name for layer in backbone.layers]
    # Layers are shared with the source model.
    assert backbone.get_layer("s0_conv") is model.get_layer("s0_conv")
    by_index = Backbone.from_model(model, cut=-2)
    assert by_index.output.shape == (None, 8, 8, 8)


def test_from_model_flattens_nested_model_and_changes_input_shape():
    inner = tiny_cnn("inner")
    inputs = keras.Input((8, 8, 3))
    x = inner(inputs)
    outputs = keras.layers.Dense(2, name="classifier")(x)
    outer = keras.Model(inputs, outputs)
    backbone = Backbone.from_model(outer, cut="inner", groups=STAGES)
    assert "s1_conv" in [layer.name for layer in backbone.layers]
    assert "classifier" not in [layer.name for layer in backbone.layers]
    # A cut inside the nested model, at another input size.
    small = Backbone.from_model(
        outer, cut="s1_relu", input_shape=(4, 4, 3), num_groups=2
    )
    assert small.output.shape == (None, 4, 4, 8)
    x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(backbone(x), inner(x), atol=1e-6)


def test_from_model_sequential():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(8, name="a"),
            keras.layers.Dense(8, name="b"),
            keras.layers.Dense(2, name="c"),
        ]
    )
    backbone = Backbone.from_model(model, cut="b", groups={"x": "a", "y": "b"})
    assert backbone.group_names == ["x", "y"]
    assert backbone.output.shape == (None, 8)


def test_from_model_keeps_family_and_adds_head_group():
    app = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), include_top=False, weights=None, alpha=0.35
    )
    x = keras.layers.GlobalAveragePooling2D()(app.output)
    x = keras.layers.Dense(3, name="my_head")(x)
    backbone = Backbone.from_model(keras.Model(app.input, x))
    assert backbone.family == "MobileNetV2"
    assert backbone.group_names[-1] == "head"
    assert backbone.groups[-1].layer_names[-1] == "my_head"


# ---------------------------------------------------------------------------
# Serialization and saving
# ---------------------------------------------------------------------------
def test_serialization_round_trip():
    backbone = Backbone.from_model(tiny_cnn(), groups=STAGES)
    revived = run_serialization_test(backbone)
    assert revived.group_names == backbone.group_names
    assert [g.layer_names for g in revived.groups] == [
        g.layer_names for g in backbone.groups
    ]
    group = run_serialization_test(LayerGroup("g", ["a", "b"]))
    assert group.layer_names == ["a", "b"] and not group.resolved


def test_saving_keeps_groups_and_frozen_state(tmp_path):
    backbone = Backbone.from_model(tiny_cnn(), groups=STAGES)
    backbone.freeze_to(1, train_bn=True)
    x, _ = data(4)
    loaded = run_model_saving_test(backbone, x, tmp_path)
    assert loaded.group_names == backbone.group_names
    assert loaded.trainable_group_names == ["stage_2"]
    assert loaded.get_layer("s0_bn").trainable
    covers_every_weight_once(loaded)
    # Nested in a model with a head, too.
    model = with_head(backbone)
    loaded = run_model_saving_test(model, x, tmp_path)
    assert isinstance(loaded.layers[1], Backbone)


def test_fit_under_mirrored_strategy_matches_single_device(strategy):
    x, y = data(16)

    def train():
        keras.utils.set_random_seed(7)
        backbone = Backbone.from_model(tiny_cnn(), groups=STAGES)
        backbone.freeze_to(2, freeze_bn=True)
        model = with_head(backbone)
        model.compile(
            optimizer=keras.optimizers.SGD(0.05),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return backbone, [keras.ops.convert_to_numpy(w) for w in model.weights]

    single_backbone, single = train()
    with strategy.scope():
        backbone, mirrored = train()
    assert backbone.trainable_group_names == ["stage_1", "stage_2"]
    for a, b in zip(single, mirrored):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # And it did train.
    assert not np.allclose(
        single_backbone.get_layer("s2_conv").kernel.numpy(),
        Backbone.from_model(tiny_cnn()).get_layer("s2_conv").kernel.numpy(),
    )


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------
def test_bad_cut():
    with pytest.raises(ValueError, match="`cut`.*Close matches.*s1_relu"):
        Backbone.from_model(tiny_cnn(), cut="s1_relux")
    with pytest.raises(ValueError, match="`cut` index out of range"):
        Backbone.from_model(tiny_cnn(), cut=99)
    with pytest.raises(ValueError, match="`cut`"):
        Backbone.from_model(tiny_cnn(), cut=1.5)


def test_bad_groups():
    with pytest.raises(ValueError, match="`groups` regexes overlap.*s0_conv"):
        Backbone.from_model(tiny_cnn(), groups={"a": "s0_.*", "b": "s0_conv"})
    with pytest.raises(ValueError, match="`groups` is incomplete.*s2_conv"):
        Backbone.from_model(tiny_cnn(), groups={"a": "s0_.*", "b": "s1_.*"})
    with pytest.raises(ValueError, match="`groups`.*match no layer"):
        Backbone.from_model(tiny_cnn(), groups={**STAGES, "x": "nope"})
    with pytest.raises(ValueError, match="`groups`"):
        Backbone.from_model(tiny_cnn(), groups=42)
    with pytest.raises(ValueError, match="`groups.*regex"):
        Backbone.from_model(tiny_cnn(), groups={"a": "("})
    with pytest.raises(ValueError, match="`groups`.*not a layer"):
        Backbone.from_model(tiny_cnn(), groups=[LayerGroup("a", ["zzz"])])


def test_bad_freeze_arguments():
    backbone = Backbone.from_model(tiny_cnn(), groups=STAGES)
    backbone.freeze_to(1)
    for n in (4, -4, 1.0, True):
        with pytest.raises(ValueError, match="`n` must be an integer in"):
            backbone.freeze_to(n)
    with pytest.raises(ValueError, match="`train_bn` and `freeze_bn`"):
        backbone.freeze_to(1, train_bn=True, freeze_bn=True)
    # Bad input changed nothing.
    assert backbone.trainable_group_names == ["stage_2"]
    with pytest.raises(ValueError, match="`num_groups`"):
        Backbone.from_model(tiny_cnn(), num_groups=0)
    with pytest.raises(ValueError, match="`model`"):
        Backbone.from_model("resnet")
    with pytest.raises(ValueError, match="`name`"):
        backbone.get_group("nope")
