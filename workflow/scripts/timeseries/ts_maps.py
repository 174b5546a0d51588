from glaciermap.io import setup_logging
from glaciermap.timeseries.maps import run_ts_maps

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
run_ts_maps(list(p.glaciers), list(i.stacks), list(i.members), i.calibration, dict(p.settings), o[0],
            cache_dir=p.cache_dir)
