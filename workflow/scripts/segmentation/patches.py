from glaciermap.io import setup_logging
from glaciermap.segmentation.patches import run_centres

setup_logging(snakemake.log[0])
run_centres(snakemake.input.cubes, int(snakemake.wildcards.stride), snakemake.output[0])
