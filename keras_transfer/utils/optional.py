"""Lazy imports of optional dependencies, with an error that names the extra."""

import importlib

# module name -> (pip extra, what it is for)
_EXTRAS = {
    "keras_hub": ("hub", "keras-hub presets and backbones"),
    "keras_nlp": ("hub", "keras-nlp presets (now part of keras-hub)"),
    "keras_cv": ("cv", "keras-cv backbones"),
    "tensorflow_hub": ("tfhub", "TF-Hub handles"),
    "ai_edge_litert": ("litert", "running TFLite models with LiteRT"),
    "safetensors": ("safetensors", "Hugging Face safetensors checkpoints"),
    "matplotlib": ("report", "plots"),
    "pandas": ("report", "tables as DataFrames"),
    "sklearn": ("all", "scikit-learn utilities"),
}


def require(module_name, purpose=None):
    """Import an optional module, or raise an `ImportError` naming the extra.

    Args:
        module_name: String. The importable name, e.g. `"keras_hub"`.
        purpose: Optional string. What the caller needs it for; goes into the
            error message.

    Returns:
        The imported module.

    Examples:

        >>> np = require("numpy")
        >>> np.__name__
        'numpy'
    """
    try:
        return importlib.import_module(module_name)
    except ImportError as e:
        extra, default_purpose = _EXTRAS.get(module_name, (None, None))
        what = purpose or default_purpose or module_name
        hint = (
            f'pip install "keras-transfer[{extra}]"'
            if extra
            else f"pip install {module_name}"
        )
        raise ImportError(
            f"`{module_name}` is needed for {what} but could not be imported "
            f"({e}). Install it with: {hint}"
        ) from e
