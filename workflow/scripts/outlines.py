from glaciermap.io import setup_logging
from glaciermap.outlines import run_outlines

setup_logging(snakemake.log[0])
i = snakemake.input
keys = [(p.split("/")[-2], p.split("/")[-1][: -len(".nc")]) for p in i.preds]
run_outlines(keys, i.preds, i.cubes, i.calibration, i.areas, snakemake.config, snakemake.output[0])
