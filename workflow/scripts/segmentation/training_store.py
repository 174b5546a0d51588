from glaciermap.io import setup_logging
from glaciermap.segmentation.training_store import run_training_store
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
run_training_store(read_file_lists(snakemake.input.cubes), list(snakemake.params.layers), snakemake.output[0])
