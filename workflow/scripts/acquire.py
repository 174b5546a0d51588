from glaciermap.acquire import acquire
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
w = snakemake.wildcards
acquire(w.glacier, w.epoch, snakemake.config, snakemake.input.inventory, snakemake.output[0])
