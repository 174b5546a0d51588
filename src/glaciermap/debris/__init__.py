"""Debris-covered glaciers (CryoNet, seed 003): debris cover per glacier, the fixed-threshold baseline, the method summary."""
