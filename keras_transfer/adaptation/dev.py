"""DEV: Deep Embedded Validation."""

import numpy as np

from keras_transfer.adaptation import _selection
from keras_transfer.api_export import keras_transfer_export


@keras_transfer_export("keras_transfer.adaptation.DEV")
@_selection.register_criterion("dev")
class DEV(_selection.SelectionCriterion):
    """Deep Embedded Validation: density-ratio-weighted source validation loss.

    You et al. (2019), "Towards Accurate Model Selection in Deep Unsupervised
    Domain Adaptation". The target risk is estimated from labelled source
    validation data by importance weighting: a domain classifier (here an
    L2-regularized logistic regression on the standardized representation)
    separates source validation from target samples, and each source sample
    gets the density ratio `w = (n_s / n_t) * d / (1 - d)`, `d` its predicted
    probability of being target. The weighted losses `L = w * loss` get the
    control variate of the paper, `risk = mean(L) + eta * mean(w) - eta`
    with `eta = -cov(L, w) / var(w)`, which lowers the variance of the
    estimate since `w` has mean 1 in expectation. The score is `-risk`.

    The representation is the features when the candidate is a
    `(features, classifier)` pair (as in the paper), else the candidate's
    class probabilities. The domain classifier is cross-fitted: each source
    sample's weight comes from a classifier trained on the other half of
    the data, so no sample weighs itself.

    Args:
        control_variate: Boolean. Use the control variate (DEV, the default);
            `False` gives plain importance-weighted validation (IWCV,
            Sugiyama et al., 2007).
        l2: Float. L2 penalty of the domain classifier (per sample).
            Defaults to `1e-2`.
        clip: Float. Domain probabilities are clipped to `[clip, 1 - clip]`
            so that no weight is infinite. Defaults to `1e-3`.
        seed: Integer. Seed of the cross-fitting split. Defaults to `0`.

    Examples:

        >>> import keras_transfer
        >>> criterion = keras_transfer.adaptation.DEV()
        >>> criterion.needs_source
        True
        >>> keras_transfer.adaptation.DEV(control_variate=False)
        DEV(control_variate=False, l2=0.01, clip=0.001, seed=0)
    """

    needs_source = True

    def __init__(self, control_variate=True, l2=1e-2, clip=1e-3, seed=0):
        if not 0.0 < float(clip) < 0.5:
            raise ValueError(f"`clip` must be in (0, 0.5). Received: clip={clip}")
        if float(l2) < 0:
            raise ValueError(f"`l2` must be non-negative. Received: l2={l2}")
        self.control_variate = bool(control_variate)
        self.l2 = float(l2)
        self.clip = float(clip)
        self.seed = int(seed)

    def density_ratios(self, source_repr, target_repr):
        """Density ratio `p_target / p_source` at each source sample."""
        n_s, n_t = len(source_repr), len(target_repr)
        both = _selection.standardize(np.concatenate([source_repr, target_repr]))
        domain = np.concatenate([np.zeros(n_s), np.ones(n_t)])
        rng = np.random.default_rng(self.seed)
        fold = rng.permutation(n_s + n_t) % 2
        d = np.zeros(n_s + n_t)
        for k in (0, 1):
            w = _selection.fit_logistic_regression(
                both[fold != k], domain[fold != k], l2=self.l2
            )
            d[fold == k] = _selection.predict_logistic_regression(w, both[fold == k])
        d = np.clip(d[:n_s], self.clip, 1.0 - self.clip)
        return (n_s / n_t) * d / (1.0 - d)

    def score(self, outputs):
        weights = self.density_ratios(outputs.source_repr, outputs.target_repr)
        y = np.asarray(outputs.source_y).reshape(-1).astype("int64")
        p = outputs.source_probs[np.arange(len(y)), y]
        losses = -np.log(np.clip(p, 1e-8, 1.0))
        weighted = weights * losses
        risk = weighted.mean()
        if self.control_variate:
            var = weights.var(ddof=1)
            if var > 0:
                eta = -np.cov(weighted, weights)[0, 1] / var
                risk = risk + eta * weights.mean() - eta
        return float(-risk)

    def get_config(self):
        return {
            "control_variate": self.control_variate,
            "l2": self.l2,
            "clip": self.clip,
            "seed": self.seed,
        }
