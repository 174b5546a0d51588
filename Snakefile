# glaciermap: glacier mapping and area change with deep learning (DL4GAM and friends).
# Rules live in workflow/rules/<step>.smk, their code in src/glaciermap/<step>.py.
from snakemake.utils import min_version

min_version("9.0")


# The demo's config.yaml is read only when no --configfile is given: a user's region config defines the region
# completely and never inherits the demo's inputs (Snakemake would otherwise merge the two, key by key).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data/inventory.smk"
include: "workflow/rules/data/acquire.smk"
include: "workflow/rules/data/cube.smk"
include: "workflow/rules/data/file_list.smk"
include: "workflow/rules/data/qc.smk"
include: "workflow/rules/segmentation/labels.smk"
include: "workflow/rules/segmentation/split.smk"
include: "workflow/rules/segmentation/patches.smk"
include: "workflow/rules/segmentation/training_store.smk"
include: "workflow/rules/segmentation/train.smk"
include: "workflow/rules/segmentation/train_fold.smk"
include: "workflow/rules/segmentation/infer.smk"
include: "workflow/rules/segmentation/calibrate.smk"
include: "workflow/rules/segmentation/confusion.smk"
include: "workflow/rules/segmentation/importance.smk"
include: "workflow/rules/segmentation/random_split.smk"
# confident learning on the inventory outlines of the binary models in `outline_issues.models`
include: "workflow/rules/segmentation/outline_issues.smk"
include: "workflow/rules/area_change/areas.smk"
include: "workflow/rules/area_change/change.smk"
include: "workflow/rules/area_change/baseline.smk"
include: "workflow/rules/area_change/summary.smk"
# the Table 7 method comparison over the models in area_change.compare (DL4GAM, its no-dh/dt ablation, ...)
include: "workflow/rules/area_change/compare.smk"
include: "workflow/rules/area_change/outlines.smk"
include: "workflow/rules/area_change/figures.smk"
# the debris-covered glacier method (CryoNet) on the K-class models of `debris.models`
include: "workflow/rules/debris/cover.smk"
include: "workflow/rules/debris/thresholds.smk"
include: "workflow/rules/debris/debris_summary.smk"
# the glacier facies method (seed 002): points, samples, point CNN, confident learning, calibration, maps, SMB
include: "workflow/rules/facies/points.smk"
include: "workflow/rules/facies/samples.smk"
include: "workflow/rules/facies/facies_train.smk"
include: "workflow/rules/facies/label_issues.smk"
include: "workflow/rules/facies/facies_calibrate.smk"
include: "workflow/rules/facies/facies_maps.smk"
include: "workflow/rules/facies/smb.smk"
include: "workflow/rules/facies/facies_summary.smk"
# the glacier area time series (seed 004): acquisitions per glacier, a U-Net per fold, calibration, maps, smoothing,
# annual areas and outlines, trends
include: "workflow/rules/timeseries/ts_acquisitions.smk"
include: "workflow/rules/timeseries/ts_train.smk"
include: "workflow/rules/timeseries/ts_calibrate.smk"
include: "workflow/rules/timeseries/ts_maps.smk"
include: "workflow/rules/timeseries/ts_series.smk"
include: "workflow/rules/timeseries/ts_trends.smk"
include: "workflow/rules/timeseries/ts_summary.smk"


rule all:
    input:
        rules.qc.output,
        MODEL_TARGETS,
    default_target: True


# Work Snakemake repeats for every job while the DAG is built, done once: each input, param and resource function's
# signature, and the check that a rule's script exists. At Alps size (26,631 jobs, 2-core VM) a real run's first job
# starts after ~56 s instead of ~89 s (docs/scale.md, "Planning time"; glaciermap.planning).
from glaciermap.planning import cache_signatures, check_each_script_once

cache_signatures(workflow.rules)
check_each_script_once()
