from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/segment.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/attribute.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/checks.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/validation.smk"


rule all:
    input:
        all_outputs(),
