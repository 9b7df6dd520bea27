"""Weight averaging after fine-tuning: WiSE-FT interpolation, model soups.

- `interpolate`: a model between two weight lists (WiSE-FT).
- `choose_alpha`: the interpolation that scores best on validation data.
- `soup`: the uniform or greedy average of several fine-tunes.
- `recompute_batch_norm`: BatchNorm statistics for averaged weights.

Averaging during training is the `keras_transfer.callbacks.WeightAveraging`
callback (stochastic weight averaging, or an exponential moving average).
"""

from keras_transfer.averaging.choose_alpha import choose_alpha
from keras_transfer.averaging.interpolate import interpolate
from keras_transfer.averaging.recompute_batch_norm import recompute_batch_norm
from keras_transfer.averaging.soup import soup

__all__ = ["choose_alpha", "interpolate", "recompute_batch_norm", "soup"]
