"""Pretrained backbones with named layer groups, freezing and task heads."""
