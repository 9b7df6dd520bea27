"""Domain adaptation losses (MMD, JMMD, CORAL, entropy, MCC, MDD), and a
sparse cross-entropy with label smoothing."""

from keras_transfer.losses.coral_loss import CORALLoss
from keras_transfer.losses.entropy_loss import EntropyLoss
from keras_transfer.losses.jmmd_loss import JMMDLoss
from keras_transfer.losses.mcc_loss import MCCLoss
from keras_transfer.losses.mdd_loss import MDDLoss
from keras_transfer.losses.mmd_loss import MMDLoss
from keras_transfer.losses.sparse_categorical_crossentropy import (
    SparseCategoricalCrossentropy,
)

__all__ = [
    "CORALLoss", "EntropyLoss", "JMMDLoss", "MCCLoss", "MDDLoss", "MMDLoss",
    "SparseCategoricalCrossentropy",
]
