from glaciermap.facies.calibrate import run_facies_calibrate
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
s = p.settings
run_facies_calibrate(list(i.proba), p.classes, o.curves, o.points, o.json, n_bins=s["n_bins"], alpha=s["alpha"],
                     gamma=s["gamma"])
