from glaciermap.io import setup_logging
from glaciermap.segmentation.normalise import run_normalisation

setup_logging(snakemake.log[0])
run_normalisation(snakemake.input.cubes, snakemake.params.split, int(snakemake.wildcards.fold), snakemake.params.channels,
                  snakemake.output[0])
