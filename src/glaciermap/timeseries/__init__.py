"""Glacier area time series (seed 004, GlacierView, with DL4GAM's calibrated uncertainty): every usable acquisition
per glacier (``acquisitions``), a Landsat U-Net per geographic fold (``train``), its temperature and tau calibration
(``calibrate``), ensemble maps per acquisition (``maps``), temporal smoothing in days and annual areas, bounds and
outlines (``series``), log-linear trends per glacier and region (``trends``) and the method's summary (``summary``).
"""
