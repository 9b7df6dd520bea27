"""Learning-rate schedules for fine-tuning: slanted triangular, one-cycle, warmup."""
