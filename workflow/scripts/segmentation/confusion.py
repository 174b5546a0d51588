from glaciermap.segmentation.confusion import run_confusion_files
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
i, p = snakemake.input, snakemake.params
run_confusion_files(i.preds, i.cubes, list(i.labels), i.calibrations, p.classes, dict(snakemake.output.items()),
                    p.ece_bins)
