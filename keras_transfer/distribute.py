"""Distribution helpers: `model.fit` under `MultiWorkerMirroredStrategy`.

Keras 3.15 on TensorFlow fails in two places when a model is trained with
`MultiWorkerMirroredStrategy` (keras-team/keras#20585):

1. `fit` builds the model symbolically from the first batch, which it obtains
   with `strategy.reduce("MEAN", batch)` on the whole nested batch; the
   collective strategy cannot reduce a nested structure and raises
   "Attempt to convert a value (PerReplica...) ... to a Tensor".
2. The train step averages the scalar metric values with
   `strategy.reduce("MEAN", value, axis=0)`, and a scalar has no axis 0.

`enable_multi_worker_fit()` corrects both, so the standard TensorFlow engine
(`tf.distribute` plus `model.fit`) works across worker processes. It changes
nothing for other strategies or without a strategy, and is idempotent.
"""

import tensorflow as tf

from keras_transfer.api_export import keras_transfer_export

_PATCHED = {}


def _is_multi_worker(strategy):
    return isinstance(
        strategy, tf.distribute.MultiWorkerMirroredStrategy
    ) and getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)()


@keras_transfer_export("keras_transfer.distribute.enable_multi_worker_fit")
def enable_multi_worker_fit():
    """Make `model.fit` work under `tf.distribute.MultiWorkerMirroredStrategy`.

    Call it once, before `fit`, in every worker process. Returns `True` when
    the correction is active (it was applied now or before), `False` when this
    Keras version does not have the internals it corrects (then nothing is
    changed).

    Examples:

        >>> from keras_transfer.distribute import enable_multi_worker_fit
        >>> enable_multi_worker_fit()
        True
    """
    if _PATCHED:
        return True
    try:
        from keras.src import tree
        from keras.src.backend.tensorflow import trainer as tf_trainer
    except ImportError:  # pragma: no cover - other Keras layouts
        return False
    trainer_cls = getattr(tf_trainer, "TensorFlowTrainer", None)
    original_build = getattr(trainer_cls, "_maybe_symbolic_build", None)
    original_reduce = getattr(tf_trainer, "reduce_per_replica", None)
    if original_build is None or original_reduce is None:  # pragma: no cover
        return False

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if strategy is None or iterator is None or not _is_multi_worker(strategy):
            return original_build(self, iterator=iterator, data_batch=data_batch)
        # Only shapes and dtypes matter for the symbolic build: one local
        # replica's batch has them, no cross-worker reduction is needed.
        for _, _, it in iterator:
            batch = next(it)
            data_batch = tree.map_structure(
                lambda v: strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues)
                else v,
                batch,
            )
            break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce_per_replica(values, strategy, reduction):
        if not _is_multi_worker(strategy) or reduction not in ("auto", "mean"):
            return original_reduce(values, strategy, reduction)

        def _reduce(v):
            local = (
                strategy.experimental_local_results(v)[0]
                if isinstance(v, tf.distribute.DistributedValues)
                else v
            )
            if getattr(local, "shape", None) is not None and local.shape.rank == 0:
                return strategy.reduce("MEAN", v, axis=None)
            return original_reduce(v, strategy, reduction)

        return tree.map_structure(_reduce, values)

    trainer_cls._maybe_symbolic_build = _maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    _PATCHED["build"] = original_build
    _PATCHED["reduce"] = original_reduce
    return True
