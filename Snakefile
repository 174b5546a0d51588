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
include: "workflow/rules/inventory.smk"
include: "workflow/rules/acquire.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/qc.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/split.smk"
include: "workflow/rules/patches.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/train_fold.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/calibrate.smk"
include: "workflow/rules/confusion.smk"
include: "workflow/rules/areas.smk"
include: "workflow/rules/change.smk"
include: "workflow/rules/baseline.smk"
include: "workflow/rules/summary.smk"
# the Table 7 method comparison over the models in area_change.compare (DL4GAM, its no-dh/dt ablation, ...)
include: "workflow/rules/compare.smk"
include: "workflow/rules/outlines.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        rules.qc.output,
        MODEL_TARGETS,
    default_target: True
