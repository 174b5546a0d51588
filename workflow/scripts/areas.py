from glaciermap.io import setup_logging
from glaciermap.steps import run_areas

setup_logging(snakemake.log[0])
i = snakemake.input
keys = [(p.split("/")[-2], p.split("/")[-1][: -len(".nc")]) for p in i.preds]
run_areas(keys, i.preds, i.cubes, i.calibration, snakemake.params.split, i.manifest, snakemake.config["change"]["from"],
          dict(snakemake.output.items()))
