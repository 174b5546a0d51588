from glaciermap.io import setup_logging
from glaciermap.steps import run_calibrate

setup_logging(snakemake.log[0])
i = snakemake.input
run_calibrate(int(snakemake.wildcards.fold), snakemake.params.glaciers, i.preds, i.cubes, i.manifest,
              snakemake.params.settings, snakemake.output[0])
