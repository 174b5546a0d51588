from glaciermap.facies.label_issues import run_label_issues
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
run_label_issues(list(i.proba), p.classes, p.prunable, o.csv, o.joint, o.json, filter_by=p.filter_by)
