from glaciermap.io import setup_logging
from glaciermap.timeseries.trends import run_ts_trends

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
run_ts_trends(list(i.annual), list(i.series), list(i.outlines), dict(p.settings), o.annual, o.series, o.outlines,
              o.trends, o.json)
