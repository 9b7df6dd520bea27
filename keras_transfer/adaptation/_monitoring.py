"""Per-epoch statistics of the target predictions (private)."""

import keras
from keras import ops


class TargetDiversity(keras.metrics.Metric):
    """How spread out the target predictions are, accumulated over an epoch.

    Two values: `target_entropy`, the entropy of the mean target prediction
    divided by `log(num_classes)` (1: every class predicted equally often on
    average, 0: one class always), and `target_top_class_share`, the share of
    target samples whose predicted class is the most frequent one.
    """

    def __init__(self, num_classes, name="target_diversity", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.probability_sum = self.add_variable(
            shape=(self.num_classes,), initializer="zeros", name="probability_sum"
        )
        self.class_counts = self.add_variable(
            shape=(self.num_classes,), initializer="zeros", name="class_counts"
        )

    def update_state(self, probabilities):
        p = ops.cast(probabilities, "float32")
        self.probability_sum.assign_add(ops.sum(p, axis=0))
        hits = ops.one_hot(ops.argmax(p, axis=-1), self.num_classes)
        self.class_counts.assign_add(ops.sum(ops.cast(hits, "float32"), axis=0))

    def result(self):
        total = ops.maximum(ops.sum(self.probability_sum), 1e-12)
        mean = self.probability_sum / total
        entropy = -ops.sum(mean * ops.log(ops.maximum(mean, 1e-12)))
        normalized = entropy / ops.log(float(max(self.num_classes, 2)))
        counts = self.class_counts
        share = ops.max(counts) / ops.maximum(ops.sum(counts), 1.0)
        return {"target_entropy": normalized, "target_top_class_share": share}

    def reset_state(self):
        for variable in (self.probability_sum, self.class_counts):
            variable.assign(ops.zeros(variable.shape, variable.dtype))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
