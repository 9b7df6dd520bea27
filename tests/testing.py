"""Shared proofs every public component gets.

- `run_serialization_test`: config -> JSON -> object -> the same config.
- `run_model_saving_test`: `.keras` save, load with `safe_mode=True` and no
  `custom_objects`, same class, same outputs.
- `fit_changes_weights`: a `model.fit` step moves the trainable weights.
The `strategy` fixture (conftest.py) gives `MirroredStrategy` on two logical
CPU devices.
"""

import json
import os

import keras
import numpy as np

import keras_transfer  # noqa: F401  (registers every public class)


def _deserialize(serialized):
    return keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))


def run_serialization_test(obj, check_type=True):
    """Round-trip `obj` through `keras.saving.serialize_keras_object` and JSON.

    Returns the revived object. Fails when the configs differ, when the config
    is not JSON-serializable, or when the class changes.
    """
    serialized = keras.saving.serialize_keras_object(obj)
    text = json.dumps(serialized, sort_keys=True)
    revived = _deserialize(serialized)
    if check_type:
        assert type(revived) is type(obj), (type(revived), type(obj))
    again = json.dumps(keras.saving.serialize_keras_object(revived), sort_keys=True)
    assert _normalize(text) == _normalize(again), (text, again)
    assert serialized["registered_name"] is None or serialized[
        "registered_name"
    ].startswith(("keras_transfer>", "keras", "Functional")), serialized[
        "registered_name"
    ]
    return revived


def _normalize(text):
    # Layer/model names get uniquified on revival ("dense_1"): compare configs
    # with the names, which are not part of the behaviour, left in place but
    # build configs ignored.
    data = json.loads(text)

    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in ("build_config",)}
        if isinstance(node, list):
            return [strip(v) for v in node]
        return node

    return json.dumps(strip(data), sort_keys=True)


def run_model_saving_test(model, inputs, tmp_path, atol=1e-6, expected_class=None):
    """Save `model` to `.keras`, load it back safely, compare class and outputs.

    Loads with `keras.saving.load_model(path, safe_mode=True)` and no
    `custom_objects`: every class must be registered by `keras_transfer`.
    Returns the loaded model.
    """
    path = os.path.join(str(tmp_path), "model.keras")
    before = keras.ops.convert_to_numpy(_first(model(inputs, training=False)))
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is (expected_class or type(model)), (type(loaded), type(model))
    after = keras.ops.convert_to_numpy(_first(loaded(inputs, training=False)))
    np.testing.assert_allclose(before, after, atol=atol, rtol=1e-5)
    return loaded


def _first(outputs):
    if isinstance(outputs, dict):
        return outputs[sorted(outputs)[0]]
    if isinstance(outputs, (list, tuple)):
        return outputs[0]
    return outputs


def weights_snapshot(variables):
    """Numpy copies of `variables`, keyed by `variable.path`."""
    return {v.path: keras.ops.convert_to_numpy(v).copy() for v in variables}


def changed_paths(before, variables, atol=0.0):
    """Paths of `variables` whose value differs from the `before` snapshot."""
    out = set()
    for v in variables:
        if np.max(np.abs(before[v.path] - keras.ops.convert_to_numpy(v))) > atol:
            out.add(v.path)
    return out


def tiny_bert(sequence_length=6):
    """A one-layer keras-hub BERT as a `Backbone`, and its text preprocessor.

    Vocabulary: "good", "bad", "movie" and the special tokens; lowercasing on.
    """
    from keras_transfer.backbones import Backbone
    from keras_transfer.utils import require

    keras_hub = require("keras_hub")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie"]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer, sequence_length=sequence_length
    )
    network = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab),
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=sequence_length,
    )
    return Backbone.from_model(network), preprocessor
