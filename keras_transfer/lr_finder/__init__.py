"""The learning-rate range test: `lr_find` and its result."""

from keras_transfer.lr_finder.lr_find import lr_find
from keras_transfer.lr_finder.lr_finder_result import LRFinderResult

__all__ = ["LRFinderResult", "lr_find"]
