"""Small utilities shared by the package."""

from keras_transfer.utils.optional import require

__all__ = ["require"]
