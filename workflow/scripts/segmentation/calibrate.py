from glaciermap.segmentation.calibrate import run_calibrate
from glaciermap.io import prediction_path, setup_logging
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
i, glaciers = snakemake.input, snakemake.params.glaciers
preds = [str(prediction_path(i.preds, g, val=True)) for g in glaciers]
run_calibrate(int(snakemake.wildcards.fold), glaciers, preds, read_file_lists(i.cubes), i.manifest, snakemake.params.settings,
              snakemake.output[0], label_paths=read_file_lists(i.labels) or None)
