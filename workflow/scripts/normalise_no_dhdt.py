from glaciermap.io import setup_logging
from glaciermap.steps import run_normalisation_subset

setup_logging(snakemake.log[0])
run_normalisation_subset(snakemake.input[0], snakemake.params.channels, snakemake.output[0])
