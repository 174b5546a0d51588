"""glaciermap: glacier mapping and area change from satellite data with deep learning."""

__version__ = "0.1.0"
