"""A linear probe inside a model: its head trained alone on cached features.

`split_at(model, layer)` cuts a functional or sequential model after one of
its layers (the backbone) into a body (inputs -> the layer's outputs) and a
head (those outputs -> the model's outputs); both share the model's layers,
so training the head trains the model's own head. `probe_head` runs the body
once over the training data (inference mode: augmentation off, BatchNorm on
its moving statistics) and fits the head on the cached features, which
costs a small fraction of a step through the backbone.
"""

import keras
import numpy as np

from keras_transfer import _compat
from keras_transfer.utils.backend import strategy_scope


def _not_splittable(model, why):
    return ValueError(
        f"`probe_epochs` trains the head of `model` on cached backbone "
        f"features, which needs a functional or Sequential model whose head "
        f"sees the inputs only through the backbone; {why}. Pass "
        f"probe_epochs=0. Received: model '{model.name}' of type "
        f"{type(model).__name__}"
    )


def split_at(model, layer):
    """`(body, head)`: `model` cut after `layer`, sharing its layers."""
    if isinstance(model, keras.Sequential):
        layers = list(model.layers)
        index = [i for i, candidate in enumerate(layers) if candidate is layer]
        if len(index) != 1:
            raise _not_splittable(
                model, f"layer '{layer.name}' is not one of its top-level layers"
            )
        if not model.built:
            raise _not_splittable(model, "the Sequential model is not built")
        body_layers = layers[: index[0] + 1]
        head_layers = layers[index[0] + 1 :]
        inputs = keras.Input(
            shape=tuple(model.inputs[0].shape[1:]), dtype=model.inputs[0].dtype
        )
        x = inputs
        for part in body_layers:
            x = part(x)
        body = keras.Model(inputs, x, name=f"{model.name}_body")
        features = keras.Input(shape=tuple(x.shape[1:]), dtype=x.dtype)
        y = features
        for part in head_layers:
            y = part(y)
        return body, keras.Model(features, y, name=f"{model.name}_head")
    if not _compat.is_functional(model):
        raise _not_splittable(model, "it is a subclassed model")
    nodes = [n for n in _compat.functional_nodes(model) if n.operation is layer]
    if len(nodes) != 1:
        raise _not_splittable(
            model,
            f"layer '{layer.name}' is called {len(nodes)} times in it (once is "
            "needed)",
        )
    outputs = list(nodes[0].outputs)
    cut = outputs[0] if len(outputs) == 1 else outputs
    try:
        head = keras.Model(cut, model.outputs, name=f"{model.name}_head")
    except ValueError as error:
        raise _not_splittable(
            model, f"cutting it after '{layer.name}' failed ({error})"
        ) from None
    body = keras.Model(model.inputs, cut, name=f"{model.name}_body")
    return body, head


def _features(body, data, batch_size, steps):
    """Body outputs, labels and sample weights over `data`, once."""
    if isinstance(data, (tuple, list)):
        x, y, weights = (tuple(data) + (None,))[:3]
        return body.predict(x, batch_size=batch_size, verbose=0), y, weights
    feats, labels, weights = [], [], []
    for i, batch in enumerate(data):
        if steps is not None and i >= steps:
            break
        x, y, w = keras.utils.unpack_x_y_sample_weight(batch)
        feats.append(body.predict_on_batch(x))
        labels.append(keras.ops.convert_to_numpy(y))
        if w is not None:
            weights.append(keras.ops.convert_to_numpy(w))
    if not feats:
        raise ValueError("`train_data` yielded no batch to probe the head with.")
    feats = keras.tree.map_structure(lambda *a: np.concatenate(a), *feats)
    return feats, np.concatenate(labels), np.concatenate(weights) if weights else None


class _Penalized(keras.Model):
    """`head` with an L2 penalty on its kernels, for the probe's fit only.

    The penalty is `l2 * sum(kernel ** 2)` over the head's trainable weights
    of rank 2 or more (biases and scales are left free), added to the mean
    loss of each step through `add_loss`. The head's own layers train.
    """

    def __init__(self, head, l2, **kwargs):
        super().__init__(**kwargs)
        self.head = head
        self.l2 = float(l2)

    def call(self, inputs):
        kernels = [v for v in self.head.trainable_weights if len(v.shape) > 1]
        if kernels:
            self.add_loss(
                self.l2 * sum(keras.ops.sum(keras.ops.square(k)) for k in kernels)
            )
        return self.head(inputs)


def probe_l2_for(l2, num_examples):
    """The probe's L2 coefficient: a float, or `"auto"`: `1 / (2 * n)`.

    `"auto"` makes the probe's objective (mean loss plus the penalty) the
    one scikit-learn's `LogisticRegression()` minimizes at its default
    `C=1`, divided by the number of examples `n`.
    """
    if isinstance(l2, str):
        return 1.0 / (2.0 * max(1, num_examples))
    return float(l2)


def probe_head(
    model, layer, data, *, epochs, learning_rate, loss, batch_size, steps, l2=0.0
):
    """Fit `model`'s head on the cached outputs of `layer`; return its History.

    `l2` (a float, or `"auto"`, see `probe_l2_for`) penalizes the head's
    kernels during the probe; 0 fits the head on the loss alone.
    """
    # Under a distribution strategy, the head's optimizer and fit belong in
    # the scope the model's variables were made in.
    with strategy_scope(model):
        body, head = split_at(model, layer)
        features, y, weights = _features(body, data, batch_size or 32, steps)
        l2 = probe_l2_for(l2, len(y))
        if l2 > 0:
            head = _Penalized(head, l2, name=f"{head.name}_penalized")
        head.compile(
            optimizer=keras.optimizers.Adam(learning_rate),
            loss=loss,
            metrics=["accuracy"] if _is_classification(loss) else None,
        )
        return head.fit(
            features,
            y,
            sample_weight=weights,
            batch_size=batch_size or 32,
            epochs=epochs,
            shuffle=True,
            verbose=0,
        )


def _is_classification(loss):
    return isinstance(
        loss,
        (
            keras.losses.SparseCategoricalCrossentropy,
            keras.losses.CategoricalCrossentropy,
            keras.losses.BinaryCrossentropy,
        ),
    )
