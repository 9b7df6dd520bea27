"""Layer groups of the architectures people fine-tune most.

Each family is recognised from the names of its layers (so it still works
after a cut, inside a bigger model or with a renamed model), and maps a layer
name to a group name, ordered from input to output. Groups follow the
network's resolution stages: freezing the early stages keeps the generic
features (edges, textures) and tunes the specific ones. Layers a family does
not name fall back to the generic split (`_grouping.split_by_params`).
"""

import re


class Family:
    def __init__(self, name, required, rules):
        self.name = name
        self.required = required  # regexes some layer name must fullmatch
        self.rules = [(re.compile(p), g) for p, g in rules]

    def matches(self, names):
        return all(any(re.fullmatch(r, n) for n in names) for r in self.required)

    def group_of(self, layer_name):
        for pattern, group in self.rules:
            m = pattern.fullmatch(layer_name)
            if m:
                return group(m) if callable(group) else group
        return None


def _block_stage(bounds, prefix="stage"):
    """Group by block number: `bounds` are the first block of each stage."""

    def assign(match):
        block = int(match.group(1))
        stage = sum(1 for b in bounds if block >= b)
        return f"{prefix}_{stage}"

    return assign


FAMILIES = [
    # keras.applications.MobileNetV2: Conv1, expanded_conv_*, block_1_* ..
    # block_16_*, Conv_1. Stages by output stride: 2 (stem), 4, 8, 16, 32.
    Family(
        "MobileNetV2",
        required=[r"Conv1", r"expanded_conv_project"],
        rules=[
            (r"(Conv1|bn_Conv1|Conv1_relu|Conv1_pad)", "stem"),
            (r"expanded_conv_.*", "stem"),
            (r"block_(\d+)_.*", _block_stage([1, 3, 6, 13])),
            (r"(Conv_1|Conv_1_bn|out_relu)", "stage_4"),
        ],
    ),
    # keras.applications.ResNet50/101/152 and the V2 variants.
    Family(
        "ResNet",
        required=[r"conv1_conv", r"conv2_block1_.*"],
        rules=[
            (r"conv1_.*|pool1_.*", "stem"),
            (r"conv(\d)_block\d+_.*", lambda m: f"stage_{int(m.group(1)) - 1}"),
            (r"post_.*", "stage_4"),
        ],
    ),
]


def detect_family(layer_names):
    """The first family whose signature layers are all present, or None."""
    for family in FAMILIES:
        if family.matches(layer_names):
            return family
    return None
