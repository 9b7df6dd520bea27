"""Batch statistics over the global batch under `tf.distribute` (private).

The TensorFlow-specific part of training the adaptation methods and BSS,
in one place.

Under a `tf.distribute` strategy each replica computes its loss on its part
of the batch, and Keras sums the replicas' gradients; a loss that is a mean
of per-sample values is therefore divided by the number of replicas. A
statistic of the whole batch (a covariance, a kernel mean) is not a mean of
per-sample values: `gather` rebuilds the global batch on every replica
(`ReplicaContext.all_gather`, whose gradient sums over replicas and keeps
this replica's slice), so every replica computes the same global value, and
the same division by the number of replicas makes the summed gradient that
of the global value. Other backends (no `tf.distribute`) see one replica:
under `keras.distribution.DataParallel` on JAX the loss is computed on the
global batch already (XLA shards it), so nothing needs gathering.
"""

import keras


def _replica_context():
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return None
    return tf.distribute.get_replica_context()


def num_replicas():
    """Replicas that share one global batch (1 outside `tf.distribute`)."""
    context = _replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def gather(value):
    """`value` (batch first) concatenated over every replica, in replica order."""
    context = _replica_context()
    if value is None or context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_gather(value, axis=0)


def executing_eagerly():
    """Whether code runs eagerly now (not traced, not a symbolic build).

    On JAX every array operation inside a trace (`jax.jit`, `jax.eval_shape`)
    returns a tracer, so a tiny one tells; other backends answer `False`.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return not isinstance(jax.numpy.zeros(()), jax.core.Tracer)
    if backend != "tensorflow":
        return False
    import tensorflow as tf

    return tf.executing_eagerly()
