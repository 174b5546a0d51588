from glaciermap.io import setup_logging
from glaciermap.segmentation.normalise import run_normalisation
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
run_normalisation(read_file_lists(snakemake.input.cubes), snakemake.params.split, int(snakemake.wildcards.fold), snakemake.params.channels,
                  snakemake.output[0])
