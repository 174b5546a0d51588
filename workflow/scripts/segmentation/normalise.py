from glaciermap.io import setup_logging
from glaciermap.segmentation.normalise import run_normalisation
from glaciermap.segmentation.fold_list import read_fold_lists

setup_logging(snakemake.log[0])
run_normalisation(read_fold_lists(snakemake.input.cubes), snakemake.params.split, int(snakemake.wildcards.fold), snakemake.params.channels,
                  snakemake.output[0])
