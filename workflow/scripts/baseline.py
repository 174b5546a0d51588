from glaciermap.io import setup_logging
from glaciermap.steps import run_baseline

setup_logging(snakemake.log[0])
i, cfg = snakemake.input, snakemake.config
keys = [(p.split("/")[-2], p.split("/")[-1][: -len(".nc")]) for p in i.cubes]
run_baseline(keys, i.cubes, snakemake.params.split, i.manifest, cfg, cfg["inventory"]["min_area_km2"],
             dict(snakemake.output.items()))
