from glaciermap.data.features import write_cube
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
w, p = snakemake.wildcards, snakemake.params
write_cube(snakemake.input.scenes, snakemake.input.selection, snakemake.input.inventory, w.glacier, w.epoch,
           p.dem, p.dhdt, dict(p.settings, id_column="glac_id"), snakemake.output[0], layers=p.layers,
           sources=p.sources)
