"""`Backbone`: a functional Keras model with ordered, named layer groups."""

import difflib
import os
import re

import keras

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.backbones import _graph, _grouping
from keras_transfer.backbones.grouped_layer import GroupedLayer
from keras_transfer.backbones.image_preprocessing import APPLICATION_MODES, MODES
from keras_transfer.utils.optional import require


@keras_transfer_export("keras_transfer.backbones.Backbone")
class Backbone(keras.Model):
    """A pretrained feature extractor with ordered, named layer groups.

    A `Backbone` is a functional `keras.Model` (it is called, fitted, saved
    and loaded like one) whose layers are split into groups, ordered from
    input to output. Groups are the unit of transfer learning: freeze the
    backbone and train a head, then unfreeze the top groups (`freeze_to`), or
    give each group its own learning rate.

    Build one with `Backbone.from_model(model, cut=...)` from any Keras model,
    or directly from a functional graph, like `keras.Model(inputs, outputs)`.

    Groups are found, in this order, from:
    - `groups` given as a dict `{group name: regex or list of regexes}`
      matched (`re.fullmatch`) against layer names, a callable
      `layer -> group name`, or a list of `LayerGroup`s;
    - a table of known architectures (ResNet, MobileNet, EfficientNet,
      ConvNeXt, DenseNet, Inception/Xception, VGG, ViT, BERT-style encoders),
      recognised from their layer names;
    - otherwise a split into `num_groups` consecutive groups of similar
      parameter count.
    Layers without weights that no rule names join the group before them.

    BatchNorm policy, as in fastai: `train_bn=True` keeps BatchNorm layers
    trainable in frozen groups; `freeze_bn=True` makes every BatchNorm layer
    non-trainable, which in Keras also runs it in inference mode (moving
    statistics kept), the usual choice for small target sets.

    Args:
        inputs: The input(s) of the functional graph.
        outputs: The output(s) of the functional graph.
        groups: Optional. Dict, callable or list of `LayerGroup`s (see above).
        num_groups: Integer. Number of groups of the generic split, used when
            `groups` is None and the architecture is not recognised.
        family: Optional string. Name of the recognised architecture (set by
            the constructors; kept in the config).
        preprocessing: Optional string. How raw images are scaled for this
            backbone: an `ImagePreprocessing` mode (`"tf"`, `"torch"`,
            `"caffe"`, `"raw"`). Set by `from_keras_application`; used by
            `add_head`.
        preset: Optional string. The keras-hub preset it was loaded from
            (set by `from_preset`; used by `add_head` for text).
        name: Optional string. Name of the model.
        **kwargs: Passed to `keras.Model`.

    Examples:

        >>> inputs = keras.Input((8,))
        >>> x = keras.layers.Dense(16, activation="relu", name="d1")(inputs)
        >>> x = keras.layers.Dense(16, activation="relu", name="d2")(x)
        >>> x = keras.layers.Dense(4, name="d3")(x)
        >>> backbone = Backbone(inputs, x, groups={"low": "d1", "high": "d[23]"})
        >>> backbone.group_names
        ['low', 'high']
        >>> backbone.freeze_to(1)
        >>> backbone.trainable_group_names
        ['high']
        >>> backbone.group_of(backbone.get_layer("d1").kernel)
        'low'
    """

    def __init__(
        self,
        *args,
        groups=None,
        num_groups=3,
        family=None,
        preprocessing=None,
        preset=None,
        **kwargs,
    ):
        if preprocessing is not None and preprocessing not in MODES:
            raise ValueError(
                f"`preprocessing` must be one of {MODES} or None. "
                f"Received: preprocessing={preprocessing!r}"
            )
        super().__init__(*args, **kwargs)
        self.preprocessing = preprocessing
        self.preset = preset
        units = _grouping.unit_layers(self)
        resolved, detected = _grouping.resolve_groups(
            units, groups, num_groups, family=family
        )
        self._num_groups = num_groups
        self._grouping = GroupedLayer._of_groups(self, resolved, detected)

    # ------------------------------------------------------------------
    # Groups (the backbone is its own `GroupedLayer` view)
    # ------------------------------------------------------------------
    @property
    def grouping(self):
        """The `GroupedLayer` view of this backbone's groups."""
        return self._grouping

    @property
    def groups(self):
        """List of `LayerGroup`s, ordered from input to output."""
        return self._grouping.groups

    @property
    def group_names(self):
        """Names of the groups, ordered from input to output."""
        return self._grouping.group_names

    @property
    def family(self):
        """Name of the recognised architecture (e.g. `"ResNet"`), or None."""
        return self._grouping.family

    def get_group(self, name):
        """The `LayerGroup` called `name`."""
        return self._grouping.get_group(name)

    def group_of(self, variable):
        """Name of the group that owns `variable` (matched by path), or None.

        Args:
            variable: A `keras.Variable` or its path (string).
        """
        return self._grouping.group_of(variable)

    def freeze(self, train_bn=False):
        """Freeze every group (optionally keeping BatchNorm layers trainable).

        Args:
            train_bn: Boolean. Keep BatchNorm layers trainable (fastai).
        """
        self._grouping.freeze(train_bn=train_bn)

    def unfreeze(self, freeze_bn=False):
        """Make every group trainable.

        Args:
            freeze_bn: Boolean. Keep every BatchNorm layer non-trainable, so it
                runs in inference mode with its pretrained statistics.
        """
        self._grouping.unfreeze(freeze_bn=freeze_bn)

    def freeze_to(self, n, train_bn=False, freeze_bn=False):
        """Make the top `n` groups trainable and freeze the others.

        Args:
            n: Integer. With `n >= 0`, the last `n` groups are trainable
                (`0`: all frozen). With `n < 0`, all groups but the first
                `|n|` are trainable.
            train_bn: Boolean. BatchNorm layers of frozen groups stay
                trainable.
            freeze_bn: Boolean. Every BatchNorm layer is non-trainable
                (inference mode), also in trainable groups.

        Changing `trainable` after `compile` takes effect once the train
        function is rebuilt (`model.make_train_function(force=True)`).
        """
        self._grouping.freeze_to(n, train_bn=train_bn, freeze_bn=freeze_bn)

    @property
    def trainable_group_names(self):
        """Names of the groups whose (non-BatchNorm) weights are trainable."""
        return self._grouping.trainable_group_names

    def summary_groups(self, print_fn=None):
        """Print a table of the groups: layers, parameters, trainable.

        Args:
            print_fn: Optional callable taking a string (default `print`).
        """
        self._grouping.summary_groups(
            print_fn=print_fn, title=f"Backbone '{self.name}'"
        )

    def with_head(self, num_classes=None, **kwargs):
        """This backbone with a task head: see `keras_transfer.backbones.add_head`.

        Args:
            num_classes: Integer >= 2 for classification, None for regression.
            **kwargs: Passed to `add_head`.

        Returns:
            A `keras.Model` from raw inputs to predictions.
        """
        from keras_transfer.backbones.heads import add_head

        return add_head(self, num_classes=num_classes, **kwargs)

    # ------------------------------------------------------------------
    # Serialization
    # ------------------------------------------------------------------
    def get_config(self):
        config = super().get_config()
        config["groups"] = [g.get_config() for g in self.groups]
        config["num_groups"] = self._num_groups
        config["family"] = self.family
        config["preprocessing"] = self.preprocessing
        config["preset"] = self.preset
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # `keras.Model.from_config` rebuilds the functional graph and passes
        # the remaining keys (`groups`, ...) to `__init__`.
        return super().from_config(config, custom_objects=custom_objects)

    # ------------------------------------------------------------------
    # Constructors
    # ------------------------------------------------------------------
    @classmethod
    def from_model(
        cls,
        model,
        cut=None,
        groups=None,
        input_shape=None,
        num_groups=3,
        name=None,
        preprocessing=None,
    ):
        """Make a backbone from any Keras model, cut at a named layer.

        The layers (and weights) are shared with `model`, not copied. Nested
        functional/sequential models are expanded, so their layers can be
        grouped and frozen one by one.

        Args:
            model: A functional or sequential `keras.Model` (a subclassed
                model is wrapped as a whole and needs `input_shape`).
            cut: Optional string or integer. The last layer kept: a layer
                name (also of a layer inside a nested model) or an index
                into `model.layers`. None keeps the whole model.
            groups: Optional dict, callable or list of `LayerGroup`s; see
                `Backbone`.
            input_shape: Optional tuple, without the batch size. A new input
                shape (e.g. a smaller image size for a convolutional model).
            num_groups: Integer. Number of groups of the generic split.
            name: Optional string. Name of the backbone.
            preprocessing: Optional string. How raw images are scaled for this
                backbone (`ImagePreprocessing` mode: `"tf"`, `"torch"`,
                `"caffe"`, `"raw"`); used by `add_head`.

        Returns:
            A `Backbone`.
        """
        if not isinstance(model, keras.Model):
            raise ValueError(
                "`model` must be a `keras.Model`. "
                f"Received: model={type(model).__name__}"
            )
        name = name or f"{model.name}_backbone"
        if not _graph.is_graph_model(model):
            if cut is not None:
                raise ValueError(
                    "`cut` needs a functional or sequential model; "
                    f"'{model.name}' is subclassed. Received: cut={cut!r}"
                )
            if input_shape is None:
                raise ValueError(
                    f"`input_shape` is needed to wrap the subclassed model "
                    f"'{model.name}'. Received: input_shape=None"
                )
            inputs = keras.Input(tuple(input_shape))
            outputs = model(inputs)
            return cls(
                inputs,
                outputs,
                groups=groups,
                num_groups=num_groups,
                name=name,
                preprocessing=preprocessing,
            )

        path = None
        if cut is not None:
            if isinstance(cut, bool) or not isinstance(cut, (str, int)):
                raise ValueError(
                    "`cut` must be a layer name or an index into `model.layers`. "
                    f"Received: cut={cut!r}"
                )
            if isinstance(cut, int):
                try:
                    layer = model.layers[cut]
                except IndexError:
                    raise ValueError(
                        f"`cut` index out of range: '{model.name}' has "
                        f"{len(model.layers)} layers. Received: cut={cut}"
                    ) from None
                path = [layer]
            else:
                path = _graph.find_layer_path(model, cut)
                if path is None:
                    names = _graph.all_layer_names(model)
                    close = difflib.get_close_matches(cut, names, n=5, cutoff=0.5)
                    hint = f" Close matches: {close}." if close else ""
                    raise ValueError(
                        f"`cut` must name a layer of '{model.name}'; there is "
                        f"no layer '{cut}'.{hint} Received: cut={cut!r}"
                    )
        inputs = _graph.new_inputs_like(model, input_shape)
        call_inputs = inputs
        if isinstance(model, keras.Sequential):
            call_inputs = keras.tree.flatten(inputs)[0]
        produced = {}
        try:
            outputs = _graph.retrace(
                model, call_inputs, produced, stop_layer=path[0] if path else None
            )
        except ValueError as e:
            if input_shape is None:
                raise
            raise ValueError(
                f"`input_shape` {tuple(input_shape)} does not fit '{model.name}' "
                f"up to the cut ({e}). Received: input_shape={input_shape}"
            ) from e
        if path is not None and len(path) > 1:
            outputs = produced[path[-1].name]
        return cls(
            inputs,
            outputs,
            groups=groups,
            num_groups=num_groups,
            name=name,
            preprocessing=preprocessing,
        )

    @classmethod
    def from_keras_application(
        cls,
        application,
        weights="imagenet",
        input_shape=None,
        pooling=None,
        include_top=False,
        groups=None,
        name=None,
        **kwargs,
    ):
        """A `keras.applications` model as a backbone, with its layer groups.

        Args:
            application: String. The application, e.g. `"MobileNetV2"`, `"ResNet50"`,
                `"EfficientNetV2B0"`, `"ConvNeXtTiny"` (case-insensitive).
            weights: `"imagenet"`, None (random initialisation) or the path
                of a weights file (`.h5` / `.weights.h5`), e.g. a copy of
                the file Keras downloads, for machines without internet.
            input_shape: Optional tuple, e.g. `(96, 96, 3)`.
            pooling: Optional `"avg"` or `"max"`: pool the last feature map.
            include_top: Boolean. Keep the ImageNet classifier.
            groups: Optional group spec; see `Backbone`. Default: the
                family table.
            name: Optional string. Name of the backbone (default: the
                application model's name).
            **kwargs: Passed to the application (e.g. `alpha=0.35`).

        Returns:
            A `Backbone`, with `preprocessing` set to the application's
            input scaling.
        """
        builder, module = _application(application)
        if weights is not None and weights != "imagenet":
            if not isinstance(weights, (str, os.PathLike)) or not os.path.isfile(
                weights
            ):
                raise ValueError(
                    '`weights` must be "imagenet", None or the path of an '
                    f"existing weights file. Received: weights={weights!r}"
                )
            weights = os.fspath(weights)
        try:
            model = builder(
                include_top=include_top,
                weights=weights,
                input_shape=tuple(input_shape) if input_shape else None,
                pooling=pooling,
                **kwargs,
            )
        except Exception as e:
            if _is_network_error(e):
                raise _offline_error(
                    f"the ImageNet weights of {builder.__name__}",
                    e,
                    "Download the file on a machine with internet (Keras "
                    "keeps it in ~/.keras/models/), copy it here and pass its "
                    f"path: Backbone.from_keras_application({builder.__name__!r}, "
                    "weights='/path/to/weights.h5', ...). Or put it in "
                    "~/.keras/models/ under the same file name.",
                ) from e
            raise
        return cls.from_model(
            model,
            groups=groups,
            name=name or model.name,
            preprocessing=APPLICATION_MODES.get(module),
        )

    @classmethod
    def from_tfhub(
        cls,
        handle,
        input_shape=None,
        dtype=None,
        signature=None,
        output_key=None,
        trainable=True,
        preprocessing=None,
        name=None,
    ):
        """A TF-Hub module or TensorFlow SavedModel as a (trainable) backbone.

        The module becomes one `keras_transfer.layers.HubLayer` (its
        variables are trained by `fit`), so the backbone has one group,
        `"hub"`: a SavedModel does not expose its layers.

        Args:
            handle: String. A SavedModel folder or a TF-Hub / Kaggle handle.
            input_shape: Optional tuple without the batch size, e.g.
                `(96, 96, 3)` (or `()` for a batch of strings). By default
                read from the SavedModel's input signature; needed only when
                the module has none.
            dtype: Optional string. Input dtype (`"string"` for text
                modules); by default the signature's, else `"float32"`.
            signature: Optional string. Signature to call; see `HubLayer`.
            output_key: Optional string. Output to return; see `HubLayer`.
            trainable: Boolean. Whether `fit` updates the module's weights.
            preprocessing: Optional image scaling mode for `add_head`.
            name: Optional string. Name of the backbone.

        Returns:
            A `Backbone`.
        """
        from keras_transfer.layers.hub_layer import HubLayer

        layer = HubLayer(
            handle,
            signature=signature,
            output_key=output_key,
            trainable=trainable,
            name="hub",
        )
        spec = layer.input_signature
        if input_shape is None:
            if spec is None or spec.shape.rank is None or spec.shape.rank < 1:
                raise ValueError(
                    f"The SavedModel at {handle!r} has no input signature to "
                    "read the input shape from: pass `input_shape` (without "
                    "the batch size), e.g. input_shape=(224, 224, 3). "
                    "Received: input_shape=None"
                )
            input_shape = tuple(spec.shape.as_list()[1:])
        if dtype is None:
            dtype = spec.dtype.name if spec is not None else "float32"
        inputs = keras.Input(tuple(input_shape), dtype=dtype)
        return cls(
            inputs,
            layer(inputs),
            groups={"hub": "hub"},
            preprocessing=preprocessing,
            name=name or "hub_backbone",
        )

    @classmethod
    def from_preset(cls, preset, load_weights=True, groups=None, **kwargs):
        """A keras-hub (or keras-nlp) preset as a backbone, with layer groups.

        Args:
            preset: String. A keras-hub preset name (`"bert_tiny_en_uncased"`),
                a Kaggle / Hugging Face handle (`"hf://..."`), a local preset
                folder, or a local folder in Hugging Face format (e.g. a
                downloaded `sentence-transformers` model), as
                `keras_hub.models.Backbone.from_preset` reads them.
            load_weights: Boolean. Load the pretrained weights.
            groups: Optional group spec; see `Backbone`.
            **kwargs: Passed to `keras_hub.models.Backbone.from_preset`.

        Returns:
            A `Backbone`; `backbone.preset` keeps `preset`, so `add_head` can
            load the matching text preprocessor.
        """
        if not isinstance(preset, (str, os.PathLike)):
            raise ValueError(
                f"`preset` must be a string or a path. Received: preset={preset!r}"
            )
        preset = os.fspath(preset)
        keras_hub = require("keras_hub")
        looks_local = preset.startswith((".", "/", "~")) or os.sep in preset
        if looks_local and "://" not in preset:
            preset = os.path.expanduser(preset)
            if not os.path.isdir(preset):
                raise ValueError(
                    f"`preset` folder does not exist: {preset}. Pass a keras-hub "
                    "preset name or an existing folder. "
                    f"Received: preset={preset!r}"
                )
        elif "://" not in preset:
            known = sorted(keras_hub.models.Backbone.presets)
            if preset not in known:
                close = difflib.get_close_matches(preset, known, n=5, cutoff=0.5)
                hint = f" Close matches: {close}." if close else ""
                raise ValueError(
                    f"`preset` is not a keras-hub preset name nor a folder.{hint} "
                    "See keras_hub.models.Backbone.presets for the names. "
                    f"Received: preset={preset!r}"
                )
        try:
            hub_backbone = keras_hub.models.Backbone.from_preset(
                preset, load_weights=load_weights, **kwargs
            )
        except Exception as e:
            if _is_network_error(e):
                raise _offline_error(
                    f"the preset {preset!r}",
                    e,
                    "On a machine with internet, load it once and save it: "
                    "keras_hub.models.Backbone.from_preset(name)"
                    ".save_to_preset('folder') (plus the tokenizer's "
                    "save_to_preset), copy the folder here and pass its path: "
                    "Backbone.from_preset('/path/to/folder').",
                ) from e
            raise
        backbone = cls.from_model(hub_backbone, groups=groups, name=hub_backbone.name)
        backbone.preset = preset
        backbone._hub_backbone_class = type(hub_backbone).__name__
        return backbone


def _application(application):
    """The `keras.applications` builder called `application`, and its module."""
    available = sorted(n for n in dir(keras.applications) if n[:1].isupper())
    if not isinstance(application, str):
        raise ValueError(
            f"`application` must be a string naming a keras.applications model. "
            f"Received: application={application!r}"
        )
    lookup = {n.lower().replace("_", ""): n for n in available}
    key = application.lower().replace("_", "").replace("-", "")
    if key not in lookup:
        close = difflib.get_close_matches(application, available, n=5, cutoff=0.4)
        close = close or difflib.get_close_matches(key, list(lookup), n=5, cutoff=0.4)
        close = [lookup.get(c, c) for c in close]
        raise ValueError(
            f"`application` is not a keras.applications model: {application!r}. "
            f"Close matches: {close}. Available: {available}"
        )
    builder = getattr(keras.applications, lookup[key])
    return builder, builder.__module__.rsplit(".", 1)[-1]


def _is_network_error(error):
    text = str(error)
    if "URL fetch failure" in text or "Name or service not known" in text:
        return True
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    cause = error.__cause__ or error.__context__
    if isinstance(error, OSError) and re.search(
        r"connect|resolve|network|offline|timed out", text, re.I
    ):
        return True
    return cause is not None and cause is not error and _is_network_error(cause)


def _offline_error(what, error, hint):
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return ConnectionError(
        f"Could not download {what}: no network connection ({first_line}). "
        f"To use it offline: {hint}"
    )


