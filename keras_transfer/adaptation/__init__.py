"""Domain adaptation models trained with plain model.fit."""

from keras_transfer.adaptation.domain_adaptation_model import DomainAdaptationModel
from keras_transfer.adaptation.pair_datasets import pair_datasets

__all__ = ["DomainAdaptationModel", "pair_datasets"]
