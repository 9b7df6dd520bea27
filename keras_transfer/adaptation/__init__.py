"""Domain adaptation models trained with plain model.fit."""
