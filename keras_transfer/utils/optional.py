"""Lazy imports of optional dependencies, with an error that names the extra."""

import importlib

# top-level module -> (keras-transfer extra or None, pip package, what it is for).
# Every `require(...)` in the package names a module listed here
# (tests/test_package.py walks the call sites), so each hint is installable.
_EXTRAS = {
    "keras_hub": ("hub", "keras-hub", "keras-hub presets and backbones"),
    "keras_nlp": ("hub", "keras-hub", "keras-nlp presets (now part of keras-hub)"),
    "keras_cv": ("cv", "keras-cv", "keras-cv backbones"),
    "tensorflow_hub": ("tfhub", "tensorflow-hub", "TF-Hub handles"),
    "ai_edge_litert": ("litert", "ai-edge-litert", "running TFLite models"),
    "safetensors": ("safetensors", "safetensors", "safetensors checkpoints"),
    "matplotlib": ("report", "matplotlib", "plots"),
    "pandas": ("report", "pandas", "tables as DataFrames"),
    "sklearn": (None, "scikit-learn", "scikit-learn utilities"),
}


def install_hint(module_name):
    """The pip command that installs `module_name` (a module path is fine).

    Examples:

        >>> install_hint("ai_edge_litert.interpreter")
        'pip install "keras-transfer[litert]"'
        >>> install_hint("sklearn.datasets")
        'pip install scikit-learn'
    """
    top = module_name.split(".")[0]
    extra, package, _ = _EXTRAS.get(top, (None, top, None))
    if extra:
        return f'pip install "keras-transfer[{extra}]"'
    return f"pip install {package}"


def require(module_name, purpose=None):
    """Import an optional module, or raise an `ImportError` naming the extra.

    Args:
        module_name: String. The importable name, e.g. `"keras_hub"` or
            `"sklearn.datasets"`.
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
        top = module_name.split(".")[0]
        default_purpose = _EXTRAS.get(top, (None, None, None))[2]
        what = purpose or default_purpose or module_name
        raise ImportError(
            f"`{module_name}` is needed for {what} but could not be imported "
            f"({e}). Install it with: {install_hint(module_name)}"
        ) from e
