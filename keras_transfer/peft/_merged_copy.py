"""A merged copy of an adapted model, for export: the model itself untouched."""

import os
import tempfile

import keras

from keras_transfer.peft import _adapters
from keras_transfer.peft.merge_lora import merge_lora


def has_adapters(model):
    return bool(_adapters.adapted_layers(model))


def merged_copy(model):
    """`model` if it has no adapters, else a copy with every adapter merged.

    The copy goes through a `.keras` file, which holds every adapted kernel
    with its update folded in (Keras's own saving; DoRA layers do the same);
    the copy's remaining adapter variables (at zero) are then removed, so the
    copy has exactly the variables and classes of the base architecture.
    """
    if not has_adapters(model):
        return model
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        copy = keras.saving.load_model(path, compile=False)
    if has_adapters(copy):
        merge_lora(copy)
    return copy
