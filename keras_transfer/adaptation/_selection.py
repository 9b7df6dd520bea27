"""Shared pieces of unsupervised model selection (private).

`select_model` is the front door; `DEV`, `ReverseValidation` and `SND` are
the criteria, each registered here under its name.
"""

import keras
import numpy as np

CRITERIA = {}


def register_criterion(name):
    def decorator(cls):
        CRITERIA[name] = cls
        cls.registered_name = name
        return cls

    return decorator


class SelectionCriterion:
    """Base of the criteria: `score(outputs)` -> float, higher is better.

    Subclasses set `needs_source` (whether labelled source validation data
    is used) and implement `score(outputs)`, where `outputs` is a
    `CandidateOutputs` holding one candidate's predictions.
    """

    needs_source = True

    def score(self, outputs):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class CandidateOutputs:
    """One candidate's predictions on the source validation and target data.

    `source_repr`/`target_repr` are the features when the candidate is a
    `(features, classifier)` pair, else its class probabilities.
    """

    def __init__(
        self, candidate, source_x, source_y, target_x, from_logits, batch_size
    ):
        self.source_x, self.source_y, self.target_x = source_x, source_y, target_x
        self.has_features = isinstance(candidate, (tuple, list))
        self.target_repr, self.target_probs = _predict(
            candidate, target_x, from_logits, batch_size
        )
        if source_x is not None:
            self.source_repr, self.source_probs = _predict(
                candidate, source_x, from_logits, batch_size
            )
        else:
            self.source_repr = self.source_probs = None


def _predict(candidate, x, from_logits, batch_size):
    if isinstance(candidate, (tuple, list)):
        features, classifier = candidate
        z = _numpy(features.predict(x, batch_size=batch_size, verbose=0))
        out = _numpy(classifier.predict(z, batch_size=batch_size, verbose=0))
    else:
        out = _numpy(candidate.predict(x, batch_size=batch_size, verbose=0))
        z = None
    probs = softmax(out) if from_logits else np.clip(out, 0.0, 1.0)
    if z is None:
        z = probs
    return z.reshape(len(z), -1).astype("float64"), probs.astype("float64")


def _numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


def softmax(logits):
    logits = np.asarray(logits, "float64")
    logits = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=-1, keepdims=True)


def standardize(x, reference=None):
    reference = x if reference is None else reference
    mean = reference.mean(axis=0)
    std = reference.std(axis=0) + 1e-6
    return (x - mean) / std


def fit_logistic_regression(x, d, l2=1e-2, iterations=25):
    """L2-regularized logistic regression by Newton's method: weights, bias."""
    n, dim = x.shape
    xb = np.concatenate([x, np.ones((n, 1))], axis=1)
    w = np.zeros(dim + 1)
    reg = np.full(dim + 1, l2 * n)
    reg[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (p - d) + reg * w
        hess = (
            (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg) + 1e-8 * np.eye(dim + 1)
        )
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-6:
            break
    return w


def predict_logistic_regression(w, x):
    xb = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    return 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))


def fit_softmax_regression(x, y, num_classes, l2=1e-3, iterations=300):
    """Multinomial logistic regression by heavy-ball gradient descent.

    The step is the inverse of the loss's curvature bound (half the largest
    eigenvalue of the inputs' second moment, by power iteration).
    """
    n, dim = x.shape
    xb = np.concatenate([x, np.ones((n, 1))], axis=1)
    v = np.random.default_rng(0).normal(size=dim + 1)
    for _ in range(30):
        v = xb.T @ (xb @ v) / n
        top = np.linalg.norm(v)
        v /= top
    lr = 1.0 / (0.5 * top + l2)
    w = np.zeros((dim + 1, num_classes))
    velocity = np.zeros_like(w)
    one_hot = np.eye(num_classes)[y]
    for _ in range(iterations):
        p = softmax(xb @ w)
        grad = xb.T @ (p - one_hot) / n + l2 * w
        velocity = 0.9 * velocity - lr * grad
        w += velocity
    return w


def predict_softmax_regression(w, x):
    xb = np.concatenate([x, np.ones((len(x), 1))], axis=1)
    return np.argmax(xb @ w, axis=1)
