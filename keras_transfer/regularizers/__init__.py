"""Fine-tuning regularizers: L2-SP and batch spectral shrinkage."""
