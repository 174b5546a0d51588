from glaciermap.io import setup_logging
from glaciermap.segmentation.labels import run_label_set

setup_logging(snakemake.log[0])
run_label_set(snakemake.wildcards.labelset, snakemake.params.spec, list(snakemake.input.maps), snakemake.output[0])
