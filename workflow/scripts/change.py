from glaciermap.io import setup_logging
from glaciermap.steps import run_change

setup_logging(snakemake.log[0])
i, cfg = snakemake.input, snakemake.config
run_change(i.areas, i.manifest, i.inventory, cfg, cfg["inventory"]["min_area_km2"], dict(snakemake.output.items()))
