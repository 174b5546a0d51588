from pathlib import Path

from glaciermap.io import setup_logging
from glaciermap.area_change.baseline import run_baseline

setup_logging(snakemake.log[0])
i, p = snakemake.input, snakemake.params
keys = [(Path(c).parent.name, Path(c).stem) for c in i.cubes]
run_baseline(keys, i.cubes, p.split, i.manifest, {"change": p.change}, p.min_area_km2, dict(snakemake.output.items()))
