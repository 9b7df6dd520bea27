"""CDAN+E: CDAN with samples weighted by the certainty of their prediction."""

from keras_transfer.adaptation.methods.cdan import CDAN
from keras_transfer.api_export import keras_transfer_export


@keras_transfer_export("keras_transfer.adaptation.CDANE")
class CDANE(CDAN):
    """CDAN with entropy conditioning (Long et al., 2018), `"cdan+e"`.

    Each sample's discriminator loss is weighted by `1 + exp(-H(p))`, `H`
    the entropy of its (gradient-free) prediction, so that uncertain
    predictions, whose multilinear map is least reliable, count less. Logs
    as `cdan_e_loss`. Arguments as `CDAN`.

    Examples:

        >>> import keras_transfer
        >>> keras_transfer.adaptation.CDANE().name
        'cdan_e'
    """

    default_name = "cdan_e"
    entropy_weighting = True
