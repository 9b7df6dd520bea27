"""Export to SavedModel and TFLite with a parity check."""
