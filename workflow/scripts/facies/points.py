from glaciermap.facies.points import run_points
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
run_points(p.spec, i.inventory, p.source_cfg, p.source, p.classes, p.channels, p.folds, p.seed, p.resolution,
           o.gpkg, o.rejected, o.json)
