"""Fine-tuning regularizers: L2-SP and batch spectral shrinkage."""

from keras_transfer.regularizers.bss import BSS
from keras_transfer.regularizers.l2sp import L2SP

__all__ = ["BSS", "L2SP"]
