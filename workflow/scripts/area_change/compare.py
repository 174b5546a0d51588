from pathlib import Path

from glaciermap.area_change.compare import run_compare
from glaciermap.io import prediction_files, setup_logging
from glaciermap.data.file_list import read_file_lists
from glaciermap.segmentation.split import read_split

setup_logging(snakemake.log[0])
i, p = snakemake.input, snakemake.params
split = read_split(p.split)
fold_of = dict(zip(split["glac_id"].astype(str), split["test_fold"].astype(int)))
cubes = {(Path(f).parent.name, Path(f).stem): f for f in read_file_lists(i.cubes)}
glaciers = sorted({g for g, _ in cubes})
run_compare(glaciers, fold_of, p.t0, p.t1, cubes, {m: prediction_files(i[f"preds_{m}"]) for m in p.models},
            {m: list(i[f"calibration_{m}"]) for m in p.models},
            baseline_json=i.get("baseline"), baseline_areas_csv=i.get("baseline_areas"),
            debris_map=i.get("debris"), debris_min_fraction=p.debris_min_fraction,
            truth_outlines=list(i.truth_outlines) if "truth_outlines" in i.keys() else None,
            outputs=dict(snakemake.output.items()))
