"""Domain adaptation methods: one small object per method, and their registry.

A method is an `AdaptationMethod` (one file each) that owns its
hyperparameters and says what it needs; `REGISTRY` maps the names that
`DomainAdaptationModel(method=...)` accepts to the method classes, whose
defaults are the registered defaults. Adding a method is one file and one
entry here.
"""

from keras_transfer.adaptation.methods._base import (
    AdaptationBatch,
    AdaptationMethod,
    MethodContext,
)
from keras_transfer.adaptation.methods.afn import AFN
from keras_transfer.adaptation.methods.cdan import CDAN
from keras_transfer.adaptation.methods.cdan_e import CDANE
from keras_transfer.adaptation.methods.coral import CORAL
from keras_transfer.adaptation.methods.dann import DANN
from keras_transfer.adaptation.methods.entropy import EntropyMinimization
from keras_transfer.adaptation.methods.jmmd import JMMD
from keras_transfer.adaptation.methods.mcc import MCC
from keras_transfer.adaptation.methods.mdd import MDD
from keras_transfer.adaptation.methods.mmd import MMD

#: Name -> method class; `get(name)` is the registered default.
REGISTRY = {
    "dann": DANN,
    "cdan": CDAN,
    "cdan+e": CDANE,
    "mdd": MDD,
    "mmd": MMD,
    "jmmd": JMMD,
    "coral": CORAL,
    "mcc": MCC,
    "entropy": EntropyMinimization,
    "afn": AFN,
}


def get(name, **kwargs):
    """The method registered as `name`, built with `kwargs`.

    Args:
        name: String. A key of `REGISTRY` (case-insensitive).
        **kwargs: Hyperparameters of that method, e.g. `lambda_=0.1`.

    Returns:
        A new `AdaptationMethod`.

    Examples:

        >>> from keras_transfer.adaptation import methods
        >>> methods.get("cdan+e", lambda_=0.5)
        <CDANE name=cdan_e, built=False>
    """
    key = str(name).lower() if isinstance(name, str) else name
    if key not in REGISTRY:
        raise ValueError(
            f"Unknown `method` {name!r}. Known methods: {', '.join(REGISTRY)}"
        )
    return REGISTRY[key](**kwargs)


__all__ = [
    "AFN",
    "CDAN",
    "CDANE",
    "CORAL",
    "DANN",
    "MCC",
    "MDD",
    "MMD",
    "REGISTRY",
    "AdaptationBatch",
    "AdaptationMethod",
    "EntropyMinimization",
    "JMMD",
    "MethodContext",
    "get",
]
