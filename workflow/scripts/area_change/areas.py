from glaciermap.io import paired_predictions, setup_logging
from glaciermap.area_change.areas import run_areas
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
i = snakemake.input
keys, preds, cubes = paired_predictions(i.preds, read_file_lists(i.cubes))
run_areas(keys, preds, cubes, i.calibration, snakemake.params.split, i.manifest, snakemake.params.period[0],
          dict(snakemake.output.items()))
