from glaciermap.io import setup_logging
from glaciermap.timeseries.series import run_ts_series

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
run_ts_series(i[0], list(p.glaciers), dict(p.settings), o.series, o.annual, o.outlines)
