# Debris cover per glacier and epoch from a K-class debris model's test predictions (calibrated ensemble, each
# glacier's 50 m buffer, clear pixels), its change t0 -> t1 and region totals; the planted truth when there is one.
from glaciermap.debris.cover import truth_files as _debris_truth_files

# the planted debris rasters (debris_t0.tif, debris_<t1>.tif of evaluation.truth_dir) when they exist, else none
_DEBRIS_TRUTH = _debris_truth_files(TRUTH_DIR, T0, T1)
DEBRIS_TRUTH_DIR = TRUTH_DIR if _DEBRIS_TRUTH and all(os.path.exists(_DEBRIS_TRUTH[e]) for e in CHANGE_EPOCHS) else ""
DEBRIS_TRUTH_INPUTS = ([_DEBRIS_TRUTH[e] for e in dict.fromkeys(CHANGE_EPOCHS)]
                       + [f for f in [_DEBRIS_TRUTH["outlines"]] if not ONE_EPOCH and os.path.exists(f)]
                       if DEBRIS_TRUTH_DIR else [])


rule cover:
    """Debris-covered and clean-ice area per glacier and epoch with member spread, change t0 -> t1, region totals."""
    input:
        preds=lambda w: prediction_dirs(w.model, CHANGE_EPOCHS),
        calibrations=lambda w: calibrations(w.model),
        cubes=file_lists("cubes", "test", epochs=CHANGE_EPOCHS, every_fold=True),
        inventory=f"{R}/inventory/glaciers.gpkg",
        # the planted truth (synthetic regions only; none: no truth columns)
        truth=DEBRIS_TRUTH_INPUTS,
    output:
        csv=f"{R}/debris/{{model}}/cover.csv",
        change=f"{R}/debris/{{model}}/cover_change.csv",
        gpkg=f"{R}/debris/{{model}}/cover.gpkg",
        json=f"{R}/debris/{{model}}/cover.json",
    params:
        classes=lambda w: MODELS[w.model]["classes"],
        debris_class=config["debris"]["debris_class"],
        clean_class=config["debris"]["clean_class"],
        t0=T0,
        t1=T1,
        # the planted truth's folder, from the truth inputs (none: no truth columns)
        truth_dir=lambda w, input: os.path.dirname(input.truth[0]) if input.truth else "",
    resources:
        mem_mb=region_resources("cover", "mem_mb"),
        runtime=region_resources("cover", "runtime"),
    log:
        f"{R}/logs/cover/{{model}}.log",
    benchmark:
        f"{R}/benchmarks/cover/{{model}}.tsv",
    conda:
        CONDA_ENV
    script:
        "../../scripts/debris/cover.py"
