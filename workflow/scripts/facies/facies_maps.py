from glaciermap.facies.maps import run_facies_maps
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
run_facies_maps(p.year, list(i.models), i.curves, i.points, i.glaciers, i.inventory, p.dem, p.source, p.source_cfg,
                dict(p.settings), o.maps, o.csv)
