"""Shared data: the inventory, the sources and their acquisition, image selection, the feature cubes (channels, terrain, indices, masks, grids) and their quality control."""
