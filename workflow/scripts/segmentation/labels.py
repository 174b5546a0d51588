from glaciermap.worker import call

# execution.* is not a param: it changes no result, so it re-runs nothing (glaciermap.worker)
ex = snakemake.config["execution"]
w = snakemake.wildcards
call("glaciermap.segmentation.labels", "run_labels", snakemake.input.cube, snakemake.params.spec, snakemake.output[0],
     w.labelset, w.glacier, w.epoch, log=snakemake.log[0], worker=ex["worker"],
     idle_s=ex["worker_idle_s"], jobs_per_child=ex["worker_jobs_per_child"])
