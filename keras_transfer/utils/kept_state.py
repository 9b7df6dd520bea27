"""A model's state kept when the first step of a `fit` raises (JAX trainer).

Keras's JAX trainer takes the values out of a model's variables as the first
step of `fit`, `evaluate` or `predict` begins (the jitted step receives them
instead) and puts back only the state a step returned. An error raised while
that first step is traced (bad input caught in `train_step`, `compute_loss`
or `test_step`, a shape Keras refuses) leaves the variables empty: what the
model had learnt is gone. `FirstStepSnapshot` is a callback that holds the
values as the first step begins; `restore()`, called when the run raised,
puts them back into the variables the trainer left empty, and touches no
other. Nothing is copied (JAX arrays are immutable), and the snapshot is
dropped as soon as a step has run: from then on the trainer puts its own
state back, even when a later step raises.
"""

import keras

from keras_transfer import _compat
from keras_transfer.utils.backend import backend


def _state_variables(model):
    """What the trainer hands to its steps: model, metric, optimizer state."""
    variables = list(model.trainable_variables)
    variables += model.non_trainable_variables
    variables += model.metrics_variables
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += optimizer.variables
    unique, seen = [], set()
    for variable in variables:
        if id(variable) not in seen:
            seen.add(id(variable))
            unique.append(variable)
    return unique


class FirstStepSnapshot(keras.callbacks.Callback):
    """The model's state as the first step of a run begins, to put back.

    Put it first among the callbacks of `fit`, `evaluate` or `predict` and
    call `restore()` when that call raises. Only a backend whose trainer
    empties the variables (JAX) needs it: `needed()` says whether to add
    one.
    """

    # The batch-end hooks only drop a reference: they may run on Keras's
    # dispatch thread. The snapshot itself is taken in a batch-begin hook,
    # which Keras always calls before the step.
    async_safe = True

    def __init__(self):
        super().__init__()
        self._state = None
        self._taken = False

    @staticmethod
    def needed():
        """Whether this backend's trainer empties variables during a run."""
        return backend() == "jax"

    def _begin(self, logs=None):
        self._state = None
        self._taken = False

    def _take(self, batch, logs=None):
        if self._taken:
            return
        self._taken = True
        # `self.model` attaches any state the trainer still holds; at the
        # first step of a run there is none, so this reads the model's own.
        self._state = [(v, v.value) for v in _state_variables(self.model)]

    def _drop(self, batch, logs=None):
        self._state = None

    on_train_begin = on_test_begin = on_predict_begin = _begin
    on_train_batch_begin = on_test_batch_begin = on_predict_batch_begin = _take
    on_train_batch_end = on_test_batch_end = on_predict_batch_end = _drop

    def restore(self):
        """Put the snapshot back into the variables the trainer left empty.

        Returns:
            The number of variables restored (0 when none was left empty).
        """
        state, self._state = self._state, None
        restored = 0
        for variable, value in state or ():
            if _compat.detached_by_trainer(variable):
                variable.assign(value)
                restored += 1
        return restored


def run_keeping_state(run, callbacks):
    """`run(callbacks)`, with the model's state put back if its first step raises.

    Args:
        run: A function of the callbacks list that calls `fit`, `evaluate`
            or `predict` with it.
        callbacks: A list of callbacks, or None. A
            `keras.callbacks.CallbackList` is passed on as it is, without a
            snapshot.

    Returns:
        What `run` returns.
    """
    if not FirstStepSnapshot.needed() or isinstance(
        callbacks, keras.callbacks.CallbackList
    ):
        return run(callbacks)
    snapshot = FirstStepSnapshot()
    try:
        return run([snapshot, *(callbacks or [])])
    except BaseException:
        snapshot.restore()
        raise
