"""Margin disparity discrepancy (MDD)."""

from keras import ops

from keras_transfer.api_export import keras_transfer_export
from keras_transfer.losses._base import DomainLoss, probabilities


@keras_transfer_export("keras_transfer.losses.MDDLoss")
class MDDLoss(DomainLoss):
    """The margin disparity discrepancy objective of Zhang et al. (2019).

    MDD trains an adversarial classifier `f'` beside the main classifier `f`.
    `f'` should agree with `f`'s predicted labels on the source and disagree
    on the target; the feature extractor, through a `GradientReversal`, works
    against it. This loss is what `f'` minimizes:

    `margin * CE(f'(x_s), argmax f(x_s)) - log(1 - f'(x_t)[argmax f(x_t)])`,

    (the second term is the "shifted log" disagreement of the paper). The
    labels `argmax f(.)` carry no gradient. Both terms are non-negative.

    Called as `loss([source_main, source_adversary],
    [target_main, target_adversary])`, each a `(batch, num_classes)` tensor of
    predictions. Returns a scalar.

    Args:
        margin: Float > 0. The margin factor gamma. Defaults to `4.0`.
        from_logits: Boolean. Whether the predictions are logits (else
            probabilities). Defaults to `False`.
        name: String. Name of the loss. Defaults to `"mdd_loss"`.
        **kwargs: Base `keras.losses.Loss` arguments (`reduction`, `dtype`).

    Returns:
        A scalar tensor.

    Examples:

        >>> import keras_transfer
        >>> loss = keras_transfer.losses.MDDLoss(margin=2.0)
        >>> main = np.array([[0.9, 0.1], [0.2, 0.8]], "float32")
        >>> agree, disagree = main, main[:, ::-1]
        >>> bool(loss([main, agree], [main, disagree]) <
        ...      loss([main, disagree], [main, agree]))
        True
    """

    def __init__(self, margin=4.0, from_logits=False, name="mdd_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        if not float(margin) > 0:
            raise ValueError(f"`margin` must be a float > 0. Received: margin={margin}")
        self.margin = float(margin)
        self.from_logits = bool(from_logits)

    def _check(self, source, target):
        for name, value in (("source", source), ("target", target)):
            if not isinstance(value, list) or len(value) != 2:
                raise ValueError(
                    f"`MDDLoss` expects `{name}` to be [main_predictions, "
                    "adversary_predictions]. Received: "
                    f"{name}={type(value).__name__}"
                )
        super()._check(source, target)

    def compute(self, source, target):
        main_s, adv_s = source
        main_t, adv_t = target
        num_classes = ops.shape(main_s)[-1]
        label_s = ops.stop_gradient(ops.one_hot(ops.argmax(main_s, -1), num_classes))
        label_t = ops.stop_gradient(ops.one_hot(ops.argmax(main_t, -1), num_classes))
        p_s = probabilities(adv_s, self.from_logits)
        p_t = probabilities(adv_t, self.from_logits)
        agree_s = ops.sum(label_s * p_s, axis=-1)
        agree_t = ops.sum(label_t * p_t, axis=-1)
        source_term = -ops.log(ops.clip(agree_s, 1e-7, 1.0))
        target_term = -ops.log(ops.clip(1.0 - agree_t, 1e-7, 1.0))
        return self.margin * ops.mean(source_term) + ops.mean(target_term)

    def get_config(self):
        base_config = super().get_config()
        config = {"margin": self.margin, "from_logits": self.from_logits}
        return {**base_config, **config}
