from glaciermap.segmentation.confusion import run_confusion_files
from glaciermap.io import setup_logging
from glaciermap.data.file_list import read_file_lists

setup_logging(snakemake.log[0])
i, p = snakemake.input, snakemake.params
run_confusion_files(i.preds, read_file_lists(i.cubes), read_file_lists(i.labels), i.calibrations, p.classes, dict(snakemake.output.items()),
                    p.ece_bins)
