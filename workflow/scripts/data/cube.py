from glaciermap.data.cube import cube
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
w, p, out = snakemake.wildcards, snakemake.params, snakemake.output
cube(w.glacier, w.epoch, snakemake.input.scenes, snakemake.input.inventory, p.selection, p.dem, p.dhdt,
     dict(p.settings, id_column="glac_id"), out.selection, out.cube, layers=p.layers, sources=p.sources)
