"""`LoRASummary`: what `enable_lora` adapted, printed as a table."""

from keras_transfer.api_export import keras_transfer_export


@keras_transfer_export("keras_transfer.peft.LoRASummary")
class LoRASummary:
    """The layers that carry adapters, and trainable vs total parameters.

    Returned by `enable_lora` and `load_adapters`; `print(summary)` shows a
    table with one row per adapted layer.

    Args:
        layers: List of dicts with keys `path`, `class_name`, `method`
            (`"LoRA"` or `"DoRA"`), `rank`, `alpha` and `params` (adapter
            parameters of the layer).
        trainable_params: Integer. Trainable parameters of the model.
        total_params: Integer. All parameters of the model.

    Examples:

        >>> summary = LoRASummary(
        ...     [{"path": "dense", "class_name": "Dense", "method": "LoRA",
        ...       "rank": 2, "alpha": 2, "params": 12}],
        ...     trainable_params=12, total_params=32,
        ... )
        >>> summary.trainable_fraction
        0.375
        >>> print(summary)
        layer  class  method  rank  alpha  params
        -----  -----  ------  ----  -----  ------
        dense  Dense  LoRA       2      2      12
        1 layer adapted; trainable 12 of 32 parameters (37.50%)
    """

    COLUMNS = ("path", "class_name", "method", "rank", "alpha", "params")
    HEADERS = ("layer", "class", "method", "rank", "alpha", "params")

    def __init__(self, layers, trainable_params, total_params):
        self.layers = [dict(row) for row in layers]
        self.trainable_params = int(trainable_params)
        self.total_params = int(total_params)

    @property
    def paths(self):
        """Paths of the adapted layers, in model order."""
        return [row["path"] for row in self.layers]

    @property
    def adapter_params(self):
        """Parameters held by the adapters."""
        return sum(int(row["params"]) for row in self.layers)

    @property
    def trainable_fraction(self):
        """Trainable parameters as a fraction of all parameters."""
        return self.trainable_params / self.total_params if self.total_params else 0.0

    def __str__(self):
        rows = [self.HEADERS] + [
            tuple(str(row[c]) for c in self.COLUMNS) for row in self.layers
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(self.COLUMNS))]
        numeric = {3, 4, 5}

        def line(cells):
            return "  ".join(
                cell.rjust(w) if i in numeric and cells is not self.HEADERS
                else cell.ljust(w)
                for i, (cell, w) in enumerate(zip(cells, widths))
            ).rstrip()

        out = [line(rows[0]), "  ".join("-" * w for w in widths)]
        out += [line(r) for r in rows[1:]]
        n = len(self.layers)
        out.append(
            f"{n} layer{'s' if n != 1 else ''} adapted; trainable "
            f"{self.trainable_params:,} of {self.total_params:,} parameters "
            f"({100 * self.trainable_fraction:.2f}%)"
        )
        return "\n".join(out)

    def __repr__(self):
        return (
            f"<LoRASummary: {len(self.layers)} layers, trainable "
            f"{self.trainable_params} of {self.total_params}>"
        )

    def get_config(self):
        return {
            "layers": self.layers,
            "trainable_params": self.trainable_params,
            "total_params": self.total_params,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)
