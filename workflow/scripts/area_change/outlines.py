from glaciermap.io import paired_predictions, setup_logging
from glaciermap.area_change.outlines import run_outlines

setup_logging(snakemake.log[0])
i = snakemake.input
keys, preds, cubes = paired_predictions(i.preds, i.cubes)
run_outlines(keys, preds, cubes, i.calibration, i.areas, snakemake.params.settings, snakemake.output[0])
