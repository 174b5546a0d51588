from glaciermap.io import setup_logging
from glaciermap.timeseries.calibrate import run_ts_calibrate

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
run_ts_calibrate(p.fold, list(i.members), dict(zip(p.glaciers, i.stacks, strict=True)), p.split, i.inventory,
                 dict(p.settings), o[0])
