"""Parameter-efficient fine-tuning: LoRA and DoRA adapters on any Keras model.

- `enable_lora`: add LoRA (or DoRA) adapters, in place, and freeze the base.
- `merge_lora`: fold the adapters into the base weights.
- `save_adapters` / `load_adapters`: the adapters and head alone, in a file.
- `LoRASummary`: what was adapted, printed as a table.
"""

from keras_transfer.peft import (
    _dora_layers,  # noqa: F401  (registers DoRA layers)
    _lora_layers,  # noqa: F401  (registers LoRA layers)
)
from keras_transfer.peft.enable_lora import enable_lora
from keras_transfer.peft.load_adapters import load_adapters
from keras_transfer.peft.lora_summary import LoRASummary
from keras_transfer.peft.merge_lora import merge_lora
from keras_transfer.peft.save_adapters import save_adapters

__all__ = [
    "LoRASummary",
    "enable_lora",
    "load_adapters",
    "merge_lora",
    "save_adapters",
]
