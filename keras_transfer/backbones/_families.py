"""Layer groups of the architectures people fine-tune most.

A family is recognised from the names of its layers, so it still works after
a cut, inside a bigger model or under another model name. Its rules map layer
names to groups, ordered from input to output; groups follow the network's
resolution stages (convolutional networks) or its blocks (transformers), so
freezing the early groups keeps the generic features and tunes the specific
ones.

Layers no rule names get the group of the next named layer (auto-named
shortcut convolutions, padding, activations); weighted layers after the last
named one (a task head kept by the cut) form a `"head"` group.
"""

import re

import keras


class Family:
    """One architecture: signature layer names and name -> group rules.

    Args:
        name: String, e.g. `"ResNet"`.
        required: List of regexes; each must fullmatch some layer name.
        rules: List of `(regex, group)`; `group` is a string or a callable
            taking the match and returning a string.
        assign: Optional callable `(units, names) -> names` that fills in
            groups by position (for auto-named layers).
    """

    def __init__(self, name, required, rules=(), assign=None):
        self.name = name
        self.required = [re.compile(r) for r in required]
        self.rules = [(re.compile(p), g) for p, g in rules]
        self.assign = assign

    def matches(self, names):
        return all(any(r.fullmatch(n) for n in names) for r in self.required)

    def group_of(self, layer_name):
        for pattern, group in self.rules:
            m = pattern.fullmatch(layer_name)
            if m:
                return group(m) if callable(group) else group
        return None

    def group_names(self, units):
        """Group name for each unit layer (positional fill included)."""
        names = [self.group_of(u.name) for u in units]
        if self.assign is not None:
            names = self.assign(units, names)
        known = [i for i, n in enumerate(names) if n is not None]
        if not known:
            return None
        last = known[-1]
        # After the last named layer: weighted layers are a task head.
        for i in range(last + 1, len(units)):
            names[i] = "head" if units[i].weights else None
        # Before it: unnamed layers join the next named layer's group.
        following = None
        for i in range(last, -1, -1):
            if names[i] is None:
                names[i] = following
            else:
                following = names[i]
        # Weightless layers after the head's start join the group before.
        current = None
        for i, n in enumerate(names):
            if n is None:
                names[i] = current
            else:
                current = n
        return names


def _by_block(bounds, offset=0):
    """Stage from a block number: `bounds` are the first block of each stage."""

    def assign(match):
        block = int(match.group(1))
        return f"stage_{sum(1 for b in bounds if block >= b) + offset}"

    return assign


def _stem_then_markers(num_pools, markers):
    """Stem up to the `num_pools`-th max pooling, then groups by marker layers.

    Every layer after the stem takes the group of the next marker layer
    (at or after it). Used for Inception-style networks whose layers inside
    blocks are auto-named.
    """
    compiled = [(re.compile(p), g) for p, g in markers]

    def assign(units, names):
        names = list(names)
        pools = 0
        stem_end = -1
        for i, u in enumerate(units):
            if isinstance(u, keras.layers.MaxPooling2D):
                pools += 1
                if pools == num_pools:
                    stem_end = i
                    break
        if stem_end < 0:
            return names
        for i in range(stem_end + 1):
            names[i] = "stem"
        for i in range(stem_end + 1, len(units)):
            names[i] = None
            for pattern, group in compiled:
                if pattern.fullmatch(units[i].name):
                    names[i] = group
                    break
        return names

    return assign


_MOBILENET_V3_SMALL = [1, 3, 8]
_MOBILENET_V3_LARGE = [1, 3, 6, 12]


def _mobilenet_v3_assign(units, names):
    blocks = [
        int(m.group(1))
        for u in units
        if (m := re.fullmatch(r"expanded_conv_(\d+)_.*", u.name))
    ]
    bounds = (
        _MOBILENET_V3_LARGE if blocks and max(blocks) >= 11 else (_MOBILENET_V3_SMALL)
    )
    stage = _by_block(bounds)
    out = []
    for u, n in zip(units, names):
        m = re.fullmatch(r"expanded_conv_(\d+)_.*", u.name)
        if m:
            n = stage(m)
        elif n == "last":
            n = f"stage_{len(bounds)}"
        out.append(n)
    return out


FAMILIES = [
    # keras.applications.MobileNetV2. Stages by output stride 2 (stem), 4,
    # 8, 16, 32.
    Family(
        "MobileNetV2",
        required=[r"Conv1", r"expanded_conv_project"],
        rules=[
            (r"Conv1.*|bn_Conv1|expanded_conv_.*", "stem"),
            (r"block_(\d+)_.*", _by_block([1, 3, 6, 13])),
            (r"Conv_1.*|out_relu", "stage_4"),
        ],
    ),
    # keras.applications.MobileNetV3Small / Large.
    Family(
        "MobileNetV3",
        required=[r"expanded_conv_project", r"expanded_conv_1_expand"],
        rules=[
            (r"rescaling.*|conv|conv_bn|expanded_conv_[a-z].*", "stem"),
            (r"conv_1|conv_1_bn", "last"),
        ],
        assign=_mobilenet_v3_assign,
    ),
    # keras.applications.MobileNet (V1).
    Family(
        "MobileNet",
        required=[r"conv_dw_1", r"conv_pw_1"],
        rules=[
            (r"conv1.*", "stem"),
            (r"conv_(?:dw|pw|pad)_(\d+).*", _by_block([1, 4, 6, 12])),
        ],
    ),
    # keras.applications.DenseNet121/169/201: dense blocks 1-4, each with
    # the transition layer (poolN_*) that follows it.
    Family(
        "DenseNet",
        required=[r"conv1_conv", r"conv2_block1_concat"],
        rules=[
            (r"conv1_.*|pool1", "stem"),
            (r"conv(\d)_block\d+_.*", lambda m: f"stage_{int(m.group(1)) - 1}"),
            (r"pool(\d)_.*", lambda m: f"stage_{int(m.group(1)) - 1}"),
            (r"bn|relu", "stage_4"),
        ],
    ),
    # keras.applications.ResNet50/101/152 and ResNet50V2/101V2/152V2.
    Family(
        "ResNet",
        required=[r"conv1_conv", r"conv2_block1_.*"],
        rules=[
            (r"conv1_.*|pool1_.*", "stem"),
            (r"conv(\d)_block\d+_.*", lambda m: f"stage_{int(m.group(1)) - 1}"),
            (r"post_.*", "stage_4"),
        ],
    ),
    # keras-cv ResNetBackbone (its stacks are named v2_stack_<i>, from 0).
    Family(
        "KerasCVResNet",
        required=[r"conv1_conv", r"v2_stack_0_block1_.*"],
        rules=[
            (r"rescaling.*|conv1_.*|pool1_.*", "stem"),
            (r"v2_stack_(\d+)_.*", lambda m: f"stage_{int(m.group(1)) + 1}"),
        ],
    ),
    # keras-cv CSPDarkNetBackbone: focus stem, then the dark2-dark5 stages.
    Family(
        "CSPDarkNet",
        required=[r"stem_focus", r"dark2_.*"],
        rules=[
            (r"rescaling.*|stem_.*", "stem"),
            (r"dark(\d)_.*", lambda m: f"stage_{int(m.group(1)) - 1}"),
        ],
    ),
    # keras.applications.EfficientNetB0-B7 and EfficientNetV2*, and keras-cv's
    # EfficientNetV2Backbone (blocks are layers named block<N><letter>_): blocks 1-2
    # (stride 4), 3 (8), 4-5 (16), 6-7 (32).
    Family(
        "EfficientNet",
        required=[r"stem_conv", r"block1a_.*"],
        rules=[
            (r"rescaling.*|normalization.*|stem_.*", "stem"),
            (r"block(\d)[a-z]_.*", _by_block([1, 3, 4, 6])),
            (r"top_.*", "stage_4"),
        ],
    ),
    # keras.applications.ConvNeXt*: stem, then 4 stages, each starting with
    # its downsampling layers.
    Family(
        "ConvNeXt",
        required=[r".*_stem(_conv)?", r".*_stage_0_block_0_.*"],
        rules=[
            (r".*_prestem_normalization|.*_stem(_.*)?", "stem"),
            (r".*_stage_(\d)_block_\d+_.*", lambda m: f"stage_{int(m.group(1)) + 1}"),
            (
                r".*_downsampling_(?:block|layernorm|conv)_(\d)",
                lambda m: f"stage_{int(m.group(1)) + 2}",
            ),
            (r"layer_normalization(_\d+)?", "stage_4"),
        ],
    ),
    # keras.applications.Xception: entry flow (blocks 2-4), middle flow
    # (5-12), exit flow (13-14).
    Family(
        "Xception",
        required=[r"block1_conv1", r"block2_sepconv1"],
        rules=[
            (r"block1_.*", "stem"),
            (r"block(\d+)_.*", _by_block([2, 5, 13])),
        ],
    ),
    # keras.applications.VGG16/19: one group per convolutional block.
    Family(
        "VGG",
        required=[r"block1_conv1", r"block1_pool", r"block2_conv1"],
        rules=[(r"block(\d)_.*", lambda m: f"block_{m.group(1)}")],
    ),
    # keras.applications.InceptionV3: stem, 35x35 (mixed0-2), 17x17
    # (mixed3-7), 8x8 (mixed8-10). Layers inside blocks are auto-named.
    Family(
        "InceptionV3",
        required=[r"mixed0", r"mixed1", r"mixed2"],
        assign=_stem_then_markers(
            2,
            [
                (r"mixed[0-2]", "stage_1"),
                (r"mixed[3-7]", "stage_2"),
                (r"mixed(8|9|10)", "stage_3"),
            ],
        ),
    ),
    # keras.applications.InceptionResNetV2: stem, 35x35, 17x17, 8x8.
    Family(
        "InceptionResNetV2",
        required=[r"mixed_5b", r"block35_1_conv"],
        assign=_stem_then_markers(
            2,
            [
                (r"mixed_5b|block35_\d+_(conv|ac)", "stage_1"),
                (r"mixed_6a|block17_\d+_(conv|ac)", "stage_2"),
                (r"mixed_7a|block8_\d+_(conv|ac)|conv_7b.*", "stage_3"),
            ],
        ),
    ),
    # keras-hub ViTBackbone (its encoder expanded into blocks, see
    # `_grouping.unit_layers`): embeddings, one group per block.
    Family(
        "ViT",
        required=[r"vit_patching_and_embedding", r"transformer_block_\d+"],
        rules=[
            (r"vit_patching_and_embedding", "embeddings"),
            (r"transformer_block_(\d+)", lambda m: f"layer_{int(m.group(1)) - 1}"),
            (r"ln", "pooler"),
        ],
    ),
    # keras-hub BERT-style encoders (BERT, DistilBERT, RoBERTa, ALBERT-like
    # names): embeddings, one group per transformer layer, pooler.
    Family(
        "BERT",
        required=[r"token_embedding", r"transformer_layer_0"],
        rules=[
            (r".*embedding.*|embeddings_.*", "embeddings"),
            (r"transformer_layer_(\d+)", lambda m: f"layer_{m.group(1)}"),
            (r"pooled_dense|pooler.*", "pooler"),
        ],
    ),
]


def detect_family(layer_names):
    """The first family whose signature layers are all present, or None."""
    for family in FAMILIES:
        if family.matches(layer_names):
            return family
    return None
