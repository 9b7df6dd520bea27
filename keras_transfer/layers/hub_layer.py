"""`HubLayer`: a TF-Hub module or TensorFlow SavedModel as a Keras 3 layer."""

import os

import keras

from keras_transfer import _compat
from keras_transfer.api_export import keras_transfer_export
from keras_transfer.layers.trust_hub_handles import is_trusted
from keras_transfer.utils.backend import require_tensorflow_backend
from keras_transfer.utils.optional import require


def _tf():
    import tensorflow as tf

    return tf


def _require_tensorflow():
    require_tensorflow_backend(
        "`HubLayer` (TF-Hub modules and TensorFlow SavedModels)",
        "On JAX, use a Keras 3 model instead: a `keras.applications` model, a "
        "keras-hub preset (`keras_transfer.backbones.Backbone.from_preset`) or "
        "a `.keras` file; a SavedModel only runs on TensorFlow.",
    )


def _resolve(handle):
    """Local folder of `handle`: a SavedModel folder, or a TF-Hub handle."""
    if os.path.isdir(os.path.expanduser(handle)):
        return os.path.expanduser(handle)
    if "://" not in handle and not handle.startswith(("hub:", "kaggle")):
        raise ValueError(
            "`handle` must be a SavedModel folder or a TF-Hub / Kaggle handle "
            "(https://tfhub.dev/..., https://www.kaggle.com/models/...). There "
            f"is no folder {handle!r}. Received: handle={handle!r}"
        )
    hub = require("tensorflow_hub", "TF-Hub handles")
    try:
        return hub.resolve(handle)
    except Exception as e:
        from keras_transfer.backbones.backbone import _is_network_error

        if _is_network_error(e):
            raise ConnectionError(
                f"Could not download the TF-Hub module {handle!r}: no network "
                f"connection ({str(e).splitlines()[0] if str(e) else e}). To "
                "use it offline: download and extract it on a machine with "
                "internet (the compressed module is at the handle's URL with "
                "'?tf-hub-format=compressed'), copy the folder here and pass "
                "its path: HubLayer('/path/to/saved_model_folder')."
            ) from e
        raise


def _has_training_argument(function):
    """Whether a restored `tf.function` takes a `training` argument."""
    for concrete in getattr(function, "concrete_functions", []) or []:
        args, kwargs = concrete.structured_input_signature
        if "training" in kwargs:
            return True
        spec = _compat.concrete_function_arg_names(concrete)
        if "training" in spec:
            return True
    return False


@keras_transfer_export("keras_transfer.layers.HubLayer")
class HubLayer(keras.layers.Layer):
    """A TF-Hub module or any TensorFlow SavedModel as a Keras 3 layer.

    `tensorflow_hub.KerasLayer` is a tf-keras (Keras 2) layer and cannot go
    into a Keras 3 model. `HubLayer` loads the SavedModel with
    `tf.saved_model.load` (TF-Hub handles are first resolved to a local
    folder with `tensorflow_hub.resolve`) and tracks its variables as Keras
    variables that *are* the SavedModel's variables: `fit` updates the
    weights the module computes with (fine-tuning, `trainable=True`).
    It needs the TensorFlow backend of Keras: on another backend, creating or
    loading one raises a `RuntimeError` that names the backend.

    Compared to `keras.layers.TFSMLayer`: the variables are shared, not
    copied, so training changes the outputs; `training` is passed to the
    module when its function takes it (BatchNorm/dropout inside TF-Hub
    modules); a `signature` and an `output_key` select what to call and
    which output to return; and the layer saves and loads inside a `.keras`
    model: the config keeps the handle or path (loaded again), the `.keras`
    file keeps the (fine-tuned) weights.

    Loading a SavedModel runs its TensorFlow graph, and a TensorFlow graph
    can read and write files: only load handles and folders you trust. So
    that a `.keras` file cannot make `keras.saving.load_model` fetch and run
    a graph of someone else's choosing, `HubLayer` honours `safe_mode` as
    `keras.layers.TFSMLayer` does: in safe mode (the default), rebuilding it
    from a config raises an error that names the handle, before the handle
    is resolved, downloaded or loaded. Opt in with
    `load_model(path, safe_mode=False)`,
    `keras.config.enable_unsafe_deserialization()`, or, for the handles you
    trust only, `with keras_transfer.layers.trust_hub_handles([...]):`.

    Args:
        handle: String. A SavedModel folder or a TF-Hub / Kaggle Models
            handle (needs `tensorflow-hub` and, once, the network).
        signature: Optional string. A serving signature to call (e.g.
            `"serving_default"`); None calls the module itself.
        output_key: Optional string. Key of the output to return when the
            module returns a dict (signatures always do).
        trainable: Boolean. Whether `fit` updates the module's variables.
        **kwargs: Passed to `keras.layers.Layer` (e.g. `name`).

    Examples:

        >>> import os, tempfile
        >>> module = tf.Module()
        >>> module.w = tf.Variable([[2.0], [1.0]])
        >>> module.__call__ = tf.function(
        ...     lambda x: tf.matmul(x, module.w),
        ...     input_signature=[tf.TensorSpec([None, 2], tf.float32)])
        >>> path = os.path.join(tempfile.mkdtemp(), "module")
        >>> tf.saved_model.save(module, path)
        >>> layer = HubLayer(path, trainable=True)
        >>> layer(np.array([[1.0, 1.0]], "float32")).numpy()
        array([[3.]], dtype=float32)
        >>> len(layer.trainable_weights), tuple(layer.trainable_weights[0].shape)
        (1, (2, 1))
    """

    def __init__(
        self, handle, signature=None, output_key=None, trainable=False, **kwargs
    ):
        if not isinstance(handle, (str, os.PathLike)):
            raise ValueError(
                "`handle` must be a string (folder or TF-Hub handle). "
                f"Received: handle={handle!r}"
            )
        _require_tensorflow()
        super().__init__(trainable=trainable, **kwargs)
        self.handle = os.fspath(handle)
        self.signature = signature
        self.output_key = output_key
        tf = _tf()
        path = _resolve(self.handle)
        with tf.init_scope():
            self._module = tf.saved_model.load(path)
        if signature is None:
            if not callable(self._module):
                raise ValueError(
                    f"The SavedModel at {self.handle!r} is not callable; pass "
                    "`signature`, one of "
                    f"{sorted(self._module.signatures)}. Received: signature=None"
                )
            self._function = self._module
            call_fn = self._module.__call__
            self._training_argument = _has_training_argument(call_fn)
            self._input_keys = None
        else:
            if signature not in self._module.signatures:
                raise ValueError(
                    f"`signature` must be one of {sorted(self._module.signatures)}"
                    f". Received: signature={signature!r}"
                )
            self._function = self._module.signatures[signature]
            self._training_argument = False
            self._input_keys = sorted(self._function.structured_input_signature[1])
            keys = sorted(self._function.structured_outputs)
            if output_key is None and len(keys) > 1:
                raise ValueError(
                    f"Signature {signature!r} has the outputs {keys}: pass "
                    "`output_key` to choose one. Received: output_key=None"
                )
            if output_key is not None and output_key not in keys:
                raise ValueError(
                    f"`output_key` must be one of {keys}. "
                    f"Received: output_key={output_key!r}"
                )
        self._track_module_variables()
        self.built = True

    @property
    def input_signature(self):
        """The `tf.TensorSpec` of the module's input, or `None` when unknown.

        Read from the SavedModel: the `input_signature` of the function the
        layer calls (or the one shape all its traces agree on), or the only
        input of `signature`. `None` when the module does not say, or takes
        several inputs.
        """
        if self._input_keys is not None:
            specs = self._function.structured_input_signature[1]
            return specs[self._input_keys[0]] if len(specs) == 1 else None
        declared = getattr(self._function.__call__, "input_signature", None)
        if declared:
            return declared[0]
        traced = {
            (tuple(spec.shape.as_list()), spec.dtype)
            for concrete in getattr(self._function.__call__, "concrete_functions", [])
            for spec in concrete.structured_input_signature[0][:1]
        }
        if len(traced) != 1:
            return None
        shape, dtype = traced.pop()
        return _tf().TensorSpec(shape, dtype)

    def _track_module_variables(self):
        tf = _tf()
        module_vars = list(getattr(self._module, "variables", []) or [])
        if not module_vars:
            # A plain tf.Module / Keras SavedModel: walk its object graph.
            module_vars = [
                obj
                for obj in tf.train.TrackableView(self._module).descendants()
                if isinstance(obj, tf.Variable)
            ]
        trainable_ids = {
            id(v) for v in getattr(self._module, "trainable_variables", []) or []
        }
        if not trainable_ids:
            trainable_ids = {id(v) for v in module_vars if v.trainable}
        seen = set()
        for v in module_vars:
            if id(v) in seen:
                continue
            seen.add(id(v))
            variable = keras.Variable(
                initializer="zeros",
                shape=v.shape,
                dtype=v.dtype.name,
                trainable=id(v) in trainable_ids,
                name=v.name.split(":")[0].replace("/", "_"),
            )
            # Share the module's own variable: the restored functions read it,
            # so an update by the optimizer changes what the module computes.
            if isinstance(v, tf.Variable):
                _compat.share_tf_variable(variable, v)
            _compat.track_variable(self, variable)

    def call(self, inputs, training=None):
        if self._input_keys is not None:
            if isinstance(inputs, dict):
                outputs = self._function(**inputs)
            elif len(self._input_keys) == 1:
                outputs = self._function(**{self._input_keys[0]: inputs})
            else:
                raise ValueError(
                    f"Signature {self.signature!r} takes the inputs "
                    f"{self._input_keys}: pass a dict with these keys."
                )
        elif self._training_argument:
            outputs = self._function(inputs, training=bool(training))
        else:
            outputs = self._function(inputs)
        if isinstance(outputs, dict):
            if self.output_key is not None:
                if self.output_key not in outputs:
                    raise ValueError(
                        f"`output_key` must be one of {sorted(outputs)}. "
                        f"Received: output_key={self.output_key!r}"
                    )
                return outputs[self.output_key]
            if len(outputs) == 1:
                return next(iter(outputs.values()))
        return outputs

    @classmethod
    def from_config(cls, config):
        """Rebuild the layer; in safe mode only for a trusted handle (see above)."""
        _require_tensorflow()
        handle = config.get("handle")
        if not is_trusted(handle) and _compat.deserialization_safe_mode() is not False:
            raise ValueError(
                f"Refusing to load the HubLayer {config.get('name')!r} with "
                f"handle={handle!r} in safe mode: loading it would resolve "
                "the handle (downloading it when it is a URL) and run the "
                "SavedModel's TensorFlow graph, which can read and write "
                "files. If you trust this handle, load inside "
                f"`keras_transfer.layers.trust_hub_handles([{handle!r}])`, "
                "or pass `safe_mode=False` to the loading function, or call "
                "`keras.config.enable_unsafe_deserialization()`."
            )
        return super().from_config(config)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "handle": self.handle,
                "signature": self.signature,
                "output_key": self.output_key,
            }
        )
        return config
