from glaciermap.io import paired_predictions, setup_logging
from glaciermap.area_change.outlines import run_outlines
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
i = snakemake.input
keys, preds, cubes = paired_predictions(i.preds, read_file_lists(i.cubes))
run_outlines(keys, preds, cubes, i.calibration, i.areas, snakemake.params.settings, snakemake.output[0])
