"""Optimizer wrappers: discriminative learning rates and layer-wise LR decay."""
