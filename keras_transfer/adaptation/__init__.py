"""Domain adaptation: models trained with plain model.fit and their methods,
test-time and source-free adaptation, and choosing without target labels."""

from keras_transfer.adaptation import methods
from keras_transfer.adaptation.adabn import adabn
from keras_transfer.adaptation.dev import DEV
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
from keras_transfer.adaptation.model_checkpoints import ModelCheckpoints
from keras_transfer.adaptation.pair_datasets import pair_datasets
from keras_transfer.adaptation.reverse_validation import ReverseValidation
from keras_transfer.adaptation.select_model import select_model
from keras_transfer.adaptation.shot import shot
from keras_transfer.adaptation.snd import SND
from keras_transfer.adaptation.tent import tent

__all__ = [
    "AFN",
    "CDAN",
    "CDANE",
    "CORAL",
    "DANN",
    "DEV",
    "JMMD",
    "MCC",
    "MDD",
    "MMD",
    "SND",
    "AdaptationMethod",
    "DomainAdaptationModel",
    "EntropyMinimization",
    "ModelCheckpoints",
    "ReverseValidation",
    "adabn",
    "methods",
    "pair_datasets",
    "select_model",
    "shot",
    "tent",
]
