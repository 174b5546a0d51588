from glaciermap.worker import call, options

# execution.* is not a param: it changes no result, so it re-runs nothing (glaciermap.worker)
ex = options(snakemake.config["execution"])
i, o, p = snakemake.input, snakemake.output, snakemake.params
call("glaciermap.timeseries.acquisitions", "run_ts_acquisitions", snakemake.wildcards.glacier, i.inventory, p.dem,
     dict(p.sources), dict(p.settings), o.nc, o.csv, log=snakemake.log[0], **ex)
