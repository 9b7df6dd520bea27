"""Domain adaptation losses: MMD, JMMD, CORAL, entropy, MCC, MDD."""
