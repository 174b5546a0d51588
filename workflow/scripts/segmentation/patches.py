from glaciermap.io import setup_logging
from glaciermap.segmentation.patches import run_centres
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
run_centres(read_file_lists(snakemake.input.cubes), int(snakemake.wildcards.stride), snakemake.output[0])
