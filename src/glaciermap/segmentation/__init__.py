"""The shared segmentation core: the cross-validation split, patches and normalisation, training and ensembles, inference, calibration, label sets and per-class scores."""
