"""keras-transfer: the transfer-learning workflow for Keras 3.

TensorFlow runs every feature; the backend-neutral core also runs with
`KERAS_BACKEND=jax` (see the backends guide).

Subpackages by capability:

- `keras_transfer.backbones`: pretrained backbones with named layer groups.
- `keras_transfer.layers`: `HubLayer` (and `trust_hub_handles`), `GradientReversal`,
  `DomainDiscriminator`.
- `keras_transfer.optimizers`: `DiscriminativeLR`.
- `keras_transfer.schedules`: fine-tuning learning-rate schedules.
- `keras_transfer.callbacks`: `GradualUnfreezing` and friends.
- `keras_transfer.regularizers`: `L2SP`, `BSS`.
- `keras_transfer.losses`: domain adaptation losses.
- `keras_transfer.adaptation`: domain adaptation models.
- `keras_transfer.transferability`: LogME and friends, ranking, reports.
- `keras_transfer.peft`: LoRA and DoRA adapters, merged for export.
- `keras_transfer.export`: SavedModel and TFLite with parity checks.
- `keras_transfer.fine_tune`: the one-call fine-tuning recipe.
- `keras_transfer.lr_find`: the learning-rate range test.
- `keras_transfer.averaging`: WiSE-FT interpolation and model soups.
- `keras_transfer.datasets`: real data and weights that packages ship.
- `keras_transfer.distribute`: `model.fit` under MultiWorkerMirroredStrategy.

Importing `keras_transfer` registers every public class for Keras saving, and
does not import keras-hub, keras-cv or tensorflow-hub (nor TensorFlow when
Keras runs on another backend).
"""

from keras_transfer import (
    adaptation,
    averaging,
    backbones,
    callbacks,
    datasets,
    distribute,
    export,
    layers,
    losses,
    lr_finder,
    optimizers,
    peft,
    regularizers,
    schedules,
    transferability,
)
from keras_transfer.fine_tune import fine_tune
from keras_transfer.lr_finder import lr_find
from keras_transfer.version import __version__

__all__ = [
    "__version__",
    "adaptation",
    "averaging",
    "backbones",
    "callbacks",
    "datasets",
    "distribute",
    "export",
    "fine_tune",
    "layers",
    "losses",
    "lr_find",
    "lr_finder",
    "optimizers",
    "peft",
    "regularizers",
    "schedules",
    "transferability",
]
