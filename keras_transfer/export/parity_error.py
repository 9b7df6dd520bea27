"""`ParityError`: an exported artifact does not compute what the model does."""


class ParityError(RuntimeError):
    """Raised when a float export differs from the Keras model too much.

    Raised by `to_saved_model` and `to_tflite` before the artifact is moved to
    its `path`, so nothing is written (and an existing artifact at `path`
    stays as it was).

    Attributes:
        result: Dict. The parity figures that were measured: `max_abs_diff`,
            `tolerance`, `argmax_agreement`, `num_parity_samples`.

    Examples:

        >>> error = ParityError("too far apart", result={"max_abs_diff": 1.0})
        >>> error.result["max_abs_diff"]
        1.0
    """

    def __init__(self, message, result=None):
        super().__init__(message)
        self.result = dict(result or {})
