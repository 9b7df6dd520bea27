"""Keras layers: HubLayer for TF-Hub modules, gradient reversal, discriminators."""
