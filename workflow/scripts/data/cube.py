from glaciermap.worker import call, options

# execution.* is not a param: it changes no result, so it re-runs nothing (glaciermap.worker)
ex = options(snakemake.config["execution"])
w, p, out = snakemake.wildcards, snakemake.params, snakemake.output
call("glaciermap.data.cube", "cube", w.glacier, w.epoch, snakemake.input.scenes, snakemake.input.inventory,
     dict(p.selection), p.dem, p.dhdt, dict(p.settings, id_column="glac_id"), out.selection, out.cube,
     layers=list(p.layers), sources=dict(p.sources), log=snakemake.log[0], **ex)
