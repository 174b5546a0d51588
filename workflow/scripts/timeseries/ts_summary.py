from glaciermap.io import setup_logging
from glaciermap.timeseries.summary import run_ts_summary

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
run_ts_summary(i.trends_json, i.trends, i.annual, list(i.acquisitions), dict(p.settings), o[0],
               truth_csv=i.get("truth"), s2_areas_csv=i.get("s2_areas"), dl4gam_regional_json=i.get("dl4gam_regional"),
               series_csv=i.series)
