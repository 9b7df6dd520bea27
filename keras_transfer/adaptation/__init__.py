"""Domain adaptation models trained with plain model.fit."""

from keras_transfer.adaptation.adabn import adabn
from keras_transfer.adaptation.dev import DEV
from keras_transfer.adaptation.domain_adaptation_model import DomainAdaptationModel
from keras_transfer.adaptation.model_checkpoints import ModelCheckpoints
from keras_transfer.adaptation.pair_datasets import pair_datasets
from keras_transfer.adaptation.reverse_validation import ReverseValidation
from keras_transfer.adaptation.select_model import select_model
from keras_transfer.adaptation.shot import shot
from keras_transfer.adaptation.snd import SND
from keras_transfer.adaptation.tent import tent

__all__ = [
    "DomainAdaptationModel",
    "pair_datasets",
    "adabn",
    "tent",
    "shot",
    "select_model",
    "DEV",
    "ReverseValidation",
    "SND",
    "ModelCheckpoints",
]
