from glaciermap.io import setup_logging
from glaciermap.segmentation.labels import run_labels

setup_logging(snakemake.log[0])
w = snakemake.wildcards
run_labels(snakemake.input.cube, snakemake.params.spec, snakemake.output[0], w.labelset, w.glacier, w.epoch)
