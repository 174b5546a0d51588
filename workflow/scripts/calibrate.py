from pathlib import Path

from glaciermap.io import setup_logging
from glaciermap.calibrate import run_calibrate

setup_logging(snakemake.log[0])
i, glaciers = snakemake.input, snakemake.params.glaciers
preds = [str(Path(i.preds) / "val" / f"{g}.nc") for g in glaciers]
run_calibrate(int(snakemake.wildcards.fold), glaciers, preds, i.cubes, i.manifest, snakemake.params.settings,
              snakemake.output[0])
