from glaciermap.io import setup_logging
from glaciermap.segmentation.split import run_split

setup_logging(snakemake.log[0])
if snakemake.params.error:
    raise SystemExit(f"no cross-validation split: {snakemake.params.error}")
cfg = snakemake.params.settings
run_split(snakemake.input.manifest, snakemake.params.frozen, snakemake.output.folds, cfg["n_folds"], cfg["val_fraction"],
          snakemake.params.assignment, cfg["added_glaciers"], cfg["min_val_glaciers"], cfg["drop_missing"],
          snakemake.params.uncovered)
