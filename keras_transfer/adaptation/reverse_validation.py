"""Reverse validation: train back on pseudo-labelled target, test on source."""

import numpy as np

from keras_transfer.adaptation import _selection
from keras_transfer.api_export import keras_transfer_export


@keras_transfer_export("keras_transfer.adaptation.ReverseValidation")
@_selection.register_criterion("reverse_validation")
class ReverseValidation(_selection.SelectionCriterion):
    """Reverse validation: a model fit to target pseudo-labels, scored on source.

    Zhong et al. (2010), used for DANN by Ganin et al. (2016): the candidate
    labels the target data (its arg-max predictions); a fresh reverse
    classifier is trained on the target samples with those pseudo-labels
    and scored on the labelled source validation data. A candidate whose
    target labels are consistent with the source classes gets a reverse
    classifier that is right on the source.

    The reverse classifier is a multinomial logistic regression on the
    flattened inputs, each domain standardized by its own per-feature mean
    and deviation (which undoes global shifts in brightness and contrast
    between the domains); it is independent of the candidate's own layers,
    so it cannot simply copy the candidate's classifier back.

    Args:
        l2: Float. L2 penalty of the reverse classifier. Defaults to `1e-3`.
        iterations: Integer. Gradient steps of the reverse classifier.
            Defaults to `200`.
        max_samples: Integer. At most this many target samples train the
            reverse classifier (a random subset). Defaults to `2000`.
        seed: Integer. Seed of the subset. Defaults to `0`.

    Examples:

        >>> import keras_transfer
        >>> keras_transfer.adaptation.ReverseValidation(iterations=100)
        ReverseValidation(l2=0.001, iterations=100, max_samples=2000, seed=0)
    """

    needs_source = True

    def __init__(self, l2=1e-3, iterations=200, max_samples=2000, seed=0):
        if float(l2) < 0:
            raise ValueError(f"`l2` must be non-negative. Received: l2={l2}")
        if int(iterations) < 1:
            raise ValueError(
                "`iterations` must be a positive integer. "
                f"Received: iterations={iterations}"
            )
        if int(max_samples) < 2:
            raise ValueError(
                f"`max_samples` must be at least 2. Received: max_samples={max_samples}"
            )
        self.l2 = float(l2)
        self.iterations = int(iterations)
        self.max_samples = int(max_samples)
        self.seed = int(seed)

    def score(self, outputs):
        xt = np.asarray(outputs.target_x, "float64").reshape(len(outputs.target_x), -1)
        xs = np.asarray(outputs.source_x, "float64").reshape(len(outputs.source_x), -1)
        pseudo = np.argmax(outputs.target_probs, axis=1)
        if len(xt) > self.max_samples:
            rng = np.random.default_rng(self.seed)
            keep = rng.choice(len(xt), self.max_samples, replace=False)
            xt, pseudo = xt[keep], pseudo[keep]
        num_classes = outputs.target_probs.shape[1]
        w = _selection.fit_softmax_regression(
            _selection.standardize(xt),
            pseudo,
            num_classes,
            l2=self.l2,
            iterations=self.iterations,
        )
        predicted = _selection.predict_softmax_regression(w, _selection.standardize(xs))
        y = np.asarray(outputs.source_y).reshape(-1)
        return float(np.mean(predicted == y))

    def get_config(self):
        return {
            "l2": self.l2,
            "iterations": self.iterations,
            "max_samples": self.max_samples,
            "seed": self.seed,
        }
