from glaciermap.area_change.figures import run_figures
from glaciermap.io import paired_predictions, setup_logging

setup_logging(snakemake.log[0])
i, p, o = snakemake.input, snakemake.params, snakemake.output
keys, preds, cubes = paired_predictions(i.preds, i.cubes)
run_figures(p.glaciers, p.epochs, dict(zip(keys, cubes)), dict(zip(keys, preds)), i.calibration, i.areas, i.get("rates"),
            i.get("rates_gpkg"), i.outlines, p.split, {"figures": p.settings},
            {"reliability": o.reliability, "boxplot": o.get("boxplot"), "rate_map": o.get("rate_map"),
             "panels": list(o.panels)})
