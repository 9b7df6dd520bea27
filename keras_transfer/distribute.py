"""Distribution helpers: `model.fit` under `MultiWorkerMirroredStrategy`.

Keras 3.15 and 3.16 on TensorFlow fail in two places when a model is trained with
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

`tf.distribute` is TensorFlow's: on another backend `enable_multi_worker_fit`
raises an error that names the backend and points to Keras's own
`keras.distribution` API (`keras.distribution.DataParallel` on JAX).
"""

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.utils.backend import require_tensorflow_backend

_ON_OTHER_BACKENDS = (
    "On JAX, distribute `model.fit` with Keras's own distribution API: "
    "`keras.distribution.set_distribution(keras.distribution.DataParallel())` "
    "before building the model, and no call to `enable_multi_worker_fit`."
)


def _is_multi_worker(strategy):
    import tensorflow as tf

    # A collective strategy spans several workers when it has more replicas
    # in sync than devices on this worker.
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)
    )


@keras_transfer_export("keras_transfer.distribute.enable_multi_worker_fit")
def enable_multi_worker_fit():
    """Make `model.fit` work under `tf.distribute.MultiWorkerMirroredStrategy`.

    Call it once, before `fit`, in every worker process. Returns `True` when
    the correction is active (it was applied now or before), `False` when this
    Keras version does not have the internals it corrects (then nothing is
    changed).

    Raises:
        RuntimeError: when Keras does not run on TensorFlow; the message
            names the backend and what to use there instead.

    Examples:

        >>> from keras_transfer.distribute import enable_multi_worker_fit
        >>> enable_multi_worker_fit()
        True
    """
    require_tensorflow_backend(
        "`enable_multi_worker_fit` (`tf.distribute.MultiWorkerMirroredStrategy`)",
        _ON_OTHER_BACKENDS,
    )
    return _compat.patch_multi_worker_fit(_is_multi_worker)
