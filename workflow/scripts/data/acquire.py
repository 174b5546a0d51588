from glaciermap.data.acquire import acquire
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
w, p = snakemake.wildcards, snakemake.params
cfg = {"imagery": p.imagery, "sources": {p.imagery: p.source}, "grid": p.grid, "epochs": {w.epoch: p.epoch}}
acquire(w.glacier, w.epoch, cfg, snakemake.input.inventory, snakemake.output[0])
