"""Callbacks: gradual unfreezing and adaptation schedules inside one fit."""
