"""Transferability scores, backbone ranking, transfer reports, domain distance.

Scores (higher means the pretrained model should transfer better):

- `logme`: log marginal evidence of a Bayesian linear model on the features.
- `leep`: log expected empirical prediction from source-class probabilities.
- `nce`: negative conditional entropy of target given source labels.
- `h_score`: H-score, optionally with shrinkage (regularized H-score).
- `transrate`: coding-rate mutual information between features and labels.

`domain_distance` tells near from far transfer before any training.
`TransferReport` (and the `BaselineRun` callback) tell whether transfer helped.
"""

from keras_transfer.transferability.baseline_run import BaselineRun
from keras_transfer.transferability.domain_distance import domain_distance
from keras_transfer.transferability.h_score import h_score
from keras_transfer.transferability.leep import leep
from keras_transfer.transferability.logme import logme
from keras_transfer.transferability.nce import nce
from keras_transfer.transferability.rank_backbones import rank_backbones
from keras_transfer.transferability.transfer_report import TransferReport
from keras_transfer.transferability.transrate import transrate

__all__ = [
    "BaselineRun",
    "TransferReport",
    "domain_distance",
    "h_score",
    "leep",
    "logme",
    "nce",
    "rank_backbones",
    "transrate",
]
