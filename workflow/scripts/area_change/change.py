from glaciermap.io import setup_logging
from glaciermap.area_change.change import run_change

setup_logging(snakemake.log[0])
i, p = snakemake.input, snakemake.params
run_change(i.areas, i.manifest, i.inventory, {"change": p.change}, p.min_area_km2, dict(snakemake.output.items()))
