from glaciermap.facies.train import run_facies_train
from glaciermap.io import setup_logging

setup_logging(snakemake.log[0])
i, o, p = snakemake.input, snakemake.output, snakemake.params
run_facies_train(i.samples, p.fold, p.folds, o.model, o.proba, o.history, dict(p.model),
                 exclude_csv=i.issues or None, seed=p.seed)
