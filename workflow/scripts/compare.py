from pathlib import Path

from glaciermap.compare import run_compare
from glaciermap.io import setup_logging
from glaciermap.split import read_split

setup_logging(snakemake.log[0])
i, p = snakemake.input, snakemake.params


def by_key(paths):
    """(glacier, epoch) -> path for .../<glacier>/<epoch>.nc files."""
    return {(Path(f).parent.name, Path(f).name[: -len(".nc")]): f for f in paths}


split = read_split(p.split)
fold_of = dict(zip(split["glac_id"].astype(str), split["test_fold"].astype(int)))
cubes = by_key(i.cubes)
glaciers = sorted({g for g, _ in cubes})
run_compare(glaciers, fold_of, p.t0, p.t1, cubes, by_key(i.preds), list(i.calibration),
            ablation_preds=by_key(i.ablation) if "ablation" in i.keys() else None,
            baseline_json=i.get("baseline"), baseline_areas_csv=i.get("baseline_areas"),
            debris_map=i.get("debris"), debris_min_fraction=p.debris_min_fraction,
            outputs=dict(snakemake.output.items()))
