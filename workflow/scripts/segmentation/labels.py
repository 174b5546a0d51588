from glaciermap.worker import call, options

# execution.* is not a param: it changes no result, so it re-runs nothing (glaciermap.worker)
ex = options(snakemake.config["execution"])
w = snakemake.wildcards
call("glaciermap.segmentation.labels", "run_labels", snakemake.input.cube, snakemake.params.spec, snakemake.output[0],
     w.labelset, w.glacier, w.epoch, log=snakemake.log[0], **ex)
