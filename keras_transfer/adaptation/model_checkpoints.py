"""A callback that keeps the weights of each epoch as candidates."""

import keras

from keras_transfer.api_export import keras_transfer_export


@keras_transfer_export("keras_transfer.adaptation.ModelCheckpoints")
class ModelCheckpoints(keras.callbacks.Callback):
    """Keeps the model's weights at the end of epochs, to choose from later.

    Without target labels the last epoch is not necessarily the best one.
    This callback keeps a copy of the weights (in host memory, as NumPy
    arrays) every `every` epochs; afterwards the callback is a sequence of
    candidates for `select_model`: iterating over it loads each kept
    checkpoint into the model in turn and yields the model (or
    `candidate(model)` when `candidate` is given, e.g.
    `lambda m: (m.features, m.classifier)`), and puts the weights the model
    had before the iteration back at the end. `restore(index)` loads one
    checkpoint for good. `epochs` lists the epoch (1-based) of each
    checkpoint. The kept weights are cleared when a `fit` starts from epoch
    0, and kept when it resumes (`initial_epoch`), as `shot` and `tent` do
    between their one-epoch `fit` calls.

    Args:
        every: Integer. Keep the weights every this many epochs. Defaults
            to `1`.
        candidate: Optional callable mapping the model to the candidate
            that is scored (a model or a `(features, classifier)` pair).

    Examples:

        >>> import keras_transfer
        >>> model = keras.Sequential([keras.Input((2,)),
        ...     keras.layers.Dense(2, activation="softmax")])
        >>> model.compile("sgd", "sparse_categorical_crossentropy")
        >>> checkpoints = keras_transfer.adaptation.ModelCheckpoints()
        >>> x, y = np.ones((8, 2)), np.zeros(8)
        >>> _ = model.fit(x, y, epochs=3, callbacks=[checkpoints], verbose=0)
        >>> len(checkpoints), checkpoints.epochs
        (3, [1, 2, 3])
        >>> scores = keras_transfer.adaptation.select_model(
        ...     checkpoints, target_x=x, criterion="snd")
        >>> checkpoints.restore(int(np.argmax(scores)))
    """

    def __init__(self, every=1, candidate=None):
        super().__init__()
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise ValueError(
                f"`every` must be a positive integer. Received: every={every!r}"
            )
        if candidate is not None and not callable(candidate):
            raise TypeError(
                f"`candidate` must be callable. Received: candidate={candidate!r}"
            )
        self.every = every
        self.candidate = candidate
        self.weights = []
        self.epochs = []

    def on_epoch_begin(self, epoch, logs=None):
        # A fit that starts from epoch 0 starts a new run; one resumed with
        # `initial_epoch` (a loop of one-epoch fits) adds to the same list.
        if epoch == 0:
            self.weights = []
            self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every == 0:
            self.weights.append(self.model.get_weights())
            self.epochs.append(epoch + 1)

    def __len__(self):
        return len(self.weights)

    def __iter__(self):
        if self.model is None:
            raise ValueError("`ModelCheckpoints` has no model: use it in `fit` first.")
        original = self.model.get_weights()
        try:
            for weights in list(self.weights):
                self.model.set_weights(weights)
                yield self.candidate(self.model) if self.candidate else self.model
        finally:
            self.model.set_weights(original)

    def restore(self, index):
        """Loads checkpoint `index` into the model."""
        if not -len(self.weights) <= int(index) < len(self.weights):
            raise IndexError(
                f"`index` must be in [0, {len(self.weights)}). Received: index={index}"
            )
        self.model.set_weights(self.weights[int(index)])

    def get_config(self):
        return {"every": self.every}
