"""Tests of keras_transfer._compat: each reach into Keras internals still works."""


def test_deserialization_safe_mode_reads_the_flag_of_the_load_under_way():
    import keras

    from keras_transfer import _compat

    seen = []

    @keras.saving.register_keras_serializable(package="test_compat")
    class Probe(keras.layers.Layer):
        @classmethod
        def from_config(cls, config):
            seen.append(_compat.deserialization_safe_mode())
            return super().from_config(config)

    config = keras.saving.serialize_keras_object(Probe())
    assert _compat.deserialization_safe_mode() is None
    keras.saving.deserialize_keras_object(config)
    keras.saving.deserialize_keras_object(config, safe_mode=True)
    keras.saving.deserialize_keras_object(config, safe_mode=False)
    assert seen == [True, True, False]
    assert _compat.deserialization_safe_mode() is None


def test_metric_direction_reads_keras_metrics():
    from keras_transfer import _compat

    assert _compat.metric_direction("accuracy") == "up"
    assert _compat.metric_direction("auc") == "up"
    assert _compat.metric_direction("kl_divergence") == "down"
    assert _compat.metric_direction("hinge") == "down"
    assert _compat.metric_direction("surely_no_such_metric") is None
