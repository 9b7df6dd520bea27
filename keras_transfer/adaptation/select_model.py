"""Unsupervised model selection: score candidates without target labels."""

import keras
import numpy as np

from keras_transfer.adaptation import _selection
from keras_transfer.adaptation import dev as _dev  # noqa: F401  (registers)
from keras_transfer.adaptation import reverse_validation as _rv  # noqa: F401
from keras_transfer.adaptation import snd as _snd  # noqa: F401
from keras_transfer.api_export import keras_transfer_export


def _criterion(criterion):
    if isinstance(criterion, _selection.SelectionCriterion):
        return criterion
    if isinstance(criterion, str) and criterion.lower() in _selection.CRITERIA:
        return _selection.CRITERIA[criterion.lower()]()
    if isinstance(criterion, str) and criterion.lower() in ("iwv", "iwcv"):
        return _selection.CRITERIA["dev"](control_variate=False)
    names = sorted(_selection.CRITERIA) + ["iwv"]
    raise ValueError(
        f"`criterion` must be one of {names} or a criterion object "
        f"(`DEV`, `ReverseValidation`, `SND`). Received: criterion={criterion!r}"
    )


def _check_candidate(candidate, index):
    parts = candidate if isinstance(candidate, (tuple, list)) else (candidate,)
    if isinstance(candidate, (tuple, list)) and len(candidate) != 2:
        raise ValueError(
            "`candidates` must hold Keras models or `(features, classifier)` "
            f"pairs. Received: candidates[{index}] with {len(candidate)} parts"
        )
    for part in parts:
        if not isinstance(part, keras.layers.Layer) or not hasattr(part, "predict"):
            raise TypeError(
                "`candidates` must hold Keras models or `(features, classifier)` "
                f"pairs of models. Received: candidates[{index}] of type "
                f"{type(part).__name__}"
            )


@keras_transfer_export("keras_transfer.adaptation.select_model")
def select_model(
    candidates,
    source_validation=None,
    target_x=None,
    criterion="dev",
    from_logits=False,
    batch_size=256,
):
    """Scores candidate models on a target domain without target labels.

    In unsupervised domain adaptation there are no target labels to choose
    the method, its weight or the epoch. Each criterion turns labelled
    source validation data and unlabelled target data into one number per
    candidate; higher is better:

    - `"dev"` (`DEV`): the source validation loss reweighted by a domain
      classifier's density ratio, with a control variate (You et al., 2019);
      `"iwv"` is the same without the control variate (importance-weighted
      validation).
    - `"reverse_validation"` (`ReverseValidation`): a classifier trained on
      the target with the candidate's pseudo-labels, scored on the source.
    - `"snd"` (`SND`): soft neighbourhood density of the target predictions
      (Saito et al., 2021); uses no source data.

    Pass `criterion` as one of these names or as a configured object
    (`DEV(control_variate=False)`). Candidates are Keras models mapping
    inputs to class predictions, or `(features, classifier)` pairs (DEV then
    estimates the density ratio on the features, as in the paper). A
    `ModelCheckpoints` callback is a sequence of candidates too: the
    checkpoints it kept during `fit`, scored one after the other.

    Args:
        candidates: List of Keras models or `(features, classifier)` pairs,
            or a `ModelCheckpoints` callback.
        source_validation: Tuple `(x, y)` of labelled source validation
            inputs and integer class labels. Needed by `"dev"`, `"iwv"` and
            `"reverse_validation"`.
        target_x: Array of unlabelled target inputs.
        criterion: String or criterion object. Defaults to `"dev"`.
        from_logits: Boolean. Whether the candidates output logits (else
            probabilities). Defaults to `False`.
        batch_size: Integer. Batch size of the predictions. Defaults to `256`.

    Returns:
        A NumPy array of one score per candidate, in their order; the best
        candidate is `np.argmax(scores)`.

    Examples:

        >>> import keras_transfer
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(200, 2)).astype("float32")
        >>> y = (x[:, 0] > 0).astype("int32")
        >>> def classifier(w):
        ...     model = keras.Sequential([keras.Input((2,)),
        ...         keras.layers.Dense(2, activation="softmax")])
        ...     model.set_weights([np.array([[-w, w], [0.0, 0.0]], "float32"),
        ...                        np.zeros(2, "float32")])
        ...     return model
        >>> good, bad = classifier(5.0), classifier(-5.0)
        >>> scores = keras_transfer.adaptation.select_model(
        ...     [good, bad], source_validation=(x, y), target_x=x + 0.2)
        >>> scores.shape, bool(scores[0] > scores[1])
        ((2,), True)
    """
    criterion = _criterion(criterion)
    if isinstance(candidates, keras.layers.Layer) or not hasattr(
        candidates, "__iter__"
    ):
        raise TypeError(
            "`candidates` must be a list of models or `(features, classifier)` "
            f"pairs. Received: candidates of type {type(candidates).__name__}"
        )
    if target_x is None:
        raise ValueError("`target_x` is required: unlabelled target inputs.")
    target_x = np.asarray(target_x)
    if len(target_x) < 2:
        raise ValueError(
            f"`target_x` must hold at least 2 samples. Received: {len(target_x)}"
        )
    source_x = source_y = None
    if criterion.needs_source:
        if (
            not isinstance(source_validation, (tuple, list))
            or len(source_validation) != 2
        ):
            raise ValueError(
                f"`source_validation` must be a tuple `(x, y)` of labelled source "
                f"validation data for criterion {criterion!r}. "
                f"Received: source_validation={type(source_validation).__name__}"
            )
        source_x, source_y = (np.asarray(a) for a in source_validation)
        if len(source_x) != len(source_y) or len(source_x) < 2:
            raise ValueError(
                "`source_validation` must hold as many labels as inputs (at "
                f"least 2). Received: {len(source_x)} inputs, {len(source_y)} labels"
            )
        if source_x.shape[1:] != target_x.shape[1:]:
            raise ValueError(
                "`source_validation` inputs and `target_x` must have the same "
                f"sample shape. Received: {source_x.shape[1:]} and "
                f"{target_x.shape[1:]}"
            )
    scores = []
    for index, candidate in enumerate(candidates):
        _check_candidate(candidate, index)
        outputs = _selection.CandidateOutputs(
            candidate, source_x, source_y, target_x, from_logits, batch_size
        )
        scores.append(criterion.score(outputs))
    if not scores:
        raise ValueError("`candidates` is empty: pass at least one model.")
    return np.asarray(scores, "float64")
