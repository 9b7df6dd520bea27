"""Domain adaptation models trained with plain model.fit, and their methods."""

from keras_transfer.adaptation import methods
from keras_transfer.adaptation.domain_adaptation_model import DomainAdaptationModel
from keras_transfer.adaptation.methods import (
    AFN,
    CDAN,
    CDANE,
    CORAL,
    DANN,
    JMMD,
    MCC,
    MDD,
    MMD,
    AdaptationMethod,
    EntropyMinimization,
)
from keras_transfer.adaptation.pair_datasets import pair_datasets

__all__ = [
    "AFN",
    "CDAN",
    "CDANE",
    "CORAL",
    "DANN",
    "JMMD",
    "MCC",
    "MDD",
    "MMD",
    "AdaptationMethod",
    "DomainAdaptationModel",
    "EntropyMinimization",
    "methods",
    "pair_datasets",
]
