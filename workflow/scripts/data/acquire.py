from glaciermap.worker import call, options

# execution.* is not a param: it changes no result, so it re-runs nothing (glaciermap.worker)
ex = options(snakemake.config["execution"])
w, p = snakemake.wildcards, snakemake.params
cfg = {"imagery": p.imagery, "sources": {p.imagery: p.source}, "grid": p.grid, "epochs": {w.epoch: p.epoch}}
call("glaciermap.data.acquire", "acquire", w.glacier, w.epoch, cfg, snakemake.input.inventory, snakemake.output[0],
     log=snakemake.log[0], **ex)
