from glaciermap.io import setup_logging
from glaciermap.segmentation.training_store import run_training_store

setup_logging(snakemake.log[0])
run_training_store(list(snakemake.input.cubes), list(snakemake.params.layers), snakemake.output[0])
