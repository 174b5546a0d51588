from glaciermap.figures import run_figures
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
i, p, o = snakemake.input, snakemake.params, snakemake.output
pairs = [(g, e) for g in p.glaciers for e in p.epochs]
run_figures(p.glaciers, p.epochs, dict(zip(pairs, i.cubes)), dict(zip(pairs, i.preds)), i.calibration, i.areas,
            i.rates, i.rates_gpkg, i.outlines, p.split, snakemake.config,
            {"reliability": o.reliability, "boxplot": o.boxplot, "rate_map": o.rate_map, "panels": list(o.panels)})
