from glaciermap.io import setup_logging
from glaciermap.timeseries.acquisitions import run_ts_acquisitions

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
run_ts_acquisitions(snakemake.wildcards.glacier, i.inventory, p.dem, dict(p.sources), dict(p.settings), o.nc, o.csv)
