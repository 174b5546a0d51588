"""Glacier facies (Maslov et al., seed 002): point CNN, training per fold, label cleaning and calibrated confidence."""
