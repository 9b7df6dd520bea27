"""SND: soft neighbourhood density of the target predictions."""

import numpy as np

from keras_transfer.adaptation import _selection
from keras_transfer.api_export import keras_transfer_export


@keras_transfer_export("keras_transfer.adaptation.SND")
@_selection.register_criterion("snd")
class SND(_selection.SelectionCriterion):
    """Soft neighbourhood density of the target predictions (no labels at all).

    Saito et al. (2021), "Tune it the Right Way: Unsupervised Validation of
    Domain Adaptation via Soft Neighborhood Density". The class-probability
    vectors of the target samples are L2-normalized; each sample's
    similarities to all others (itself left out), divided by a temperature,
    go through a softmax; the score is the mean entropy of these
    neighbourhood distributions. Predictions that form dense, well-populated
    clusters score high; scattered ones, or ones collapsed into a few
    isolated points, score lower. Needs only target inputs. It sees no
    labels at all: predictions collapsed onto one class are one dense group
    and score high, and fewer, larger groups score higher than many small
    ones, so pair it with a check of the diversity of the predictions.

    Args:
        temperature: Float. Softmax temperature of the similarities.
            Defaults to `0.05` (the paper's).
        max_samples: Integer. At most this many target samples (a random
            subset, the similarity matrix is `max_samples` squared). Defaults
            to `2000`.
        seed: Integer. Seed of the subset. Defaults to `0`.

    Examples:

        >>> import keras_transfer
        >>> snd = keras_transfer.adaptation.SND()
        >>> class Outputs:  # what select_model passes in
        ...     target_probs = np.eye(3)[np.arange(30) % 3]
        >>> clustered = snd.score(Outputs())
        >>> Outputs.target_probs = np.random.default_rng(0).dirichlet(
        ...     np.ones(3), 30)
        >>> clustered > snd.score(Outputs())
        True
    """

    needs_source = False

    def __init__(self, temperature=0.05, max_samples=2000, seed=0):
        if not float(temperature) > 0:
            raise ValueError(
                f"`temperature` must be positive. Received: temperature={temperature}"
            )
        if int(max_samples) < 2:
            raise ValueError(
                f"`max_samples` must be at least 2. Received: max_samples={max_samples}"
            )
        self.temperature = float(temperature)
        self.max_samples = int(max_samples)
        self.seed = int(seed)

    def score(self, outputs):
        p = np.asarray(outputs.target_probs, "float64")
        if len(p) > self.max_samples:
            rng = np.random.default_rng(self.seed)
            p = p[rng.choice(len(p), self.max_samples, replace=False)]
        p = p / (np.linalg.norm(p, axis=1, keepdims=True) + 1e-12)
        sim = p @ p.T / self.temperature
        np.fill_diagonal(sim, -np.inf)
        sim = sim - sim.max(axis=1, keepdims=True)
        e = np.exp(sim)
        q = e / e.sum(axis=1, keepdims=True)
        entropy = -np.sum(q * np.log(np.clip(q, 1e-30, 1.0)), axis=1)
        return float(entropy.mean())

    def get_config(self):
        return {
            "temperature": self.temperature,
            "max_samples": self.max_samples,
            "seed": self.seed,
        }
