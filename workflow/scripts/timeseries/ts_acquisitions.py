from glaciermap.worker import call

# execution.* is not a param: it changes no result, so it re-runs nothing (glaciermap.worker)
ex = snakemake.config["execution"]
i, o, p = snakemake.input, snakemake.output, snakemake.params
call("glaciermap.timeseries.acquisitions", "run_ts_acquisitions", snakemake.wildcards.glacier, i.inventory, p.dem,
     dict(p.sources), dict(p.settings), o.nc, o.csv, log=snakemake.log[0], worker=ex["worker"],
     idle_s=ex["worker_idle_s"], jobs_per_child=ex["worker_jobs_per_child"])
