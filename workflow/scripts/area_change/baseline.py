from pathlib import Path

from glaciermap.io import setup_logging
from glaciermap.area_change.baseline import run_baseline
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
i, p = snakemake.input, snakemake.params
cubes = read_file_lists(i.cubes)
keys = [(Path(c).parent.name, Path(c).stem) for c in cubes]
run_baseline(keys, cubes, p.split, i.manifest, {"change": p.change}, p.min_area_km2, dict(snakemake.output.items()))
